"""Fixtures shared by the apps' tests."""

from __future__ import annotations

from unittest import mock

import pytest

from apps.testing import make_tenant


@pytest.fixture
def sent():
    """Frames the services hand to the gateway (after commit)."""
    frames: list[tuple[str, dict]] = []
    with mock.patch(
        "apps.jobs.gateway.send_frames",
        side_effect=lambda batch, contexts=None: frames.extend(batch),
    ):
        yield frames


@pytest.fixture
def tenant():
    return make_tenant()

"""Test-wide fixtures: every test that touches storage writes into its own folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_storage(request, tmp_path):
    """Point media and upload staging at the test's tmp folder (Django tests only)."""
    if "settings" not in request.fixturenames and not request.node.get_closest_marker("django_db"):
        yield
        return
    settings = request.getfixturevalue("settings")
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CCGSC_UPLOAD_DIR = tmp_path / "uploads"
    yield

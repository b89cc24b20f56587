"""Fixtures that start the real stack as separate processes."""

from __future__ import annotations

import pytest

from tests.stack import Stack


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    stack = getattr(item, "_stack", None)
    if report.failed and stack is not None:
        for name in ["daphne", "celery", *(f"worker-{i}" for i in range(len(stack.workers)))]:
            report.sections.append((f"{name} log", stack.log(name)))
    return report


@pytest.fixture
def stack(request, tmp_path):
    stack = Stack(tmp_path, CCGSC_RECONNECT_GRACE_S="1", CCGSC_WORKER_TIMEOUT_S="20")
    request.node._stack = stack
    try:
        yield stack.start()
    finally:
        stack.stop()

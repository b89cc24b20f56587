"""Fixtures that start the real stack as separate processes, and headless Chromium.

Chromium is Debian's (``make test`` installs it), driven by Playwright with
``executable_path``. Screenshots of the page's states go to ``test-artifacts/`` (not kept in
the repository).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.stack import ROOT, Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


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


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()

"""Volunteers' browsers contribute to analytics jobs next to a Python worker, on the real stack.

Chromium is Debian's, driven by Playwright with ``executable_path`` as in test_browser.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ccgsc_client import Client
from kernels import analytics, load_shard
from kernels.noise import discrete_laplace_bound
from tests.system.conftest import ARTIFACTS
from tests.system.sniffer import Sniffer
from tests.system.test_analytics import HISTOGRAM, exact_histogram
from tests.system.test_browser import connected, join
from tests.system.test_training import wait_for

pytestmark = pytest.mark.system


def write_csv(path: Path, shard: int, count: int) -> np.ndarray:
    """A digits shard as a volunteer's CSV; returns its features as the browser reads them
    (float32, the label column left out)."""
    X, y = load_shard("digits", shard, count)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{j}" for j in range(X.shape[1])] + ["label"])
        writer.writerows(
            [[f"{v:.9f}" for v in row] + [int(label)] for row, label in zip(X, y, strict=True)]
        )
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return np.array([[float(v) for v in row[:-1]] for row in rows]).astype(np.float32)


def open_with_file(context, url: str, path: Path, name: str) -> tuple[object, int]:
    page = context.new_page()
    page.goto(url)
    page.check("input[name=source][value=file]")
    page.set_input_files("#data-file", str(path))
    return page, join(page, name)


def contributed(page, count: int) -> None:
    page.wait_for_function(
        f"document.getElementById('stat-contributions').textContent === '{count}'",
        timeout=30000,
    )


def stored_contributions(stack, job_id: int) -> dict[int, tuple[str, str, dict]]:
    rows = stack.sql(
        "SELECT c.worker_id, w.kind, c.status, c.result FROM jobs_analyticscontribution c "
        "JOIN jobs_worker w ON w.id = c.worker_id WHERE c.job_id = %s",
        job_id,
    )
    return {worker: (kind, status, result) for worker, kind, status, result in rows}


def test_two_browsers_and_a_python_worker_release_a_private_histogram(chromium, stack, tmp_path):
    client = Client(stack.base_url, stack.token)
    files = [tmp_path / f"volunteer-{i}.csv" for i in range(2)]
    data = [write_csv(path, i, 3) for i, path in enumerate(files)]
    contents = [path.read_bytes() for path in files]
    with Sniffer(stack.port) as sniffer:
        url = f"http://127.0.0.1:{sniffer.port}/worker/join/{stack.enrollment_key}/"
        contexts = [chromium.new_context() for _ in files]
        try:
            opened = [
                open_with_file(context, url, path, f"analytics-{i}")
                for i, (context, path) in enumerate(zip(contexts, files, strict=True))
            ]
            pages, browser_ids = [page for page, _ in opened], [w for _, w in opened]
            stack.spawn_worker(stack.enroll("python-analytics"), "2/3", dataset="digits")
            wait_for(lambda: len(connected(client)) == 3, 60, "three workers")
            job = client.jobs.create(
                name="pixel 20",
                type="analytics",
                kernel="analytics",
                config=HISTOGRAM,
                policy={"min_workers": 3, "epsilon_budget": 5.0, "deadline_s": 120},
            )
            job.start().wait(timeout=120)
            for i, page in enumerate(pages):
                contributed(page, 1)
                page.screenshot(path=ARTIFACTS / f"analytics-{i}-contributed.png")
                assert "accepted" in page.inner_text("#status")
        finally:
            for context in contexts:
                context.close()
        sent = sniffer.sent_bytes()

    assert job.status == "completed", job.data
    released = client.get(f"jobs/{job.id}/result/")["result"]
    assert released["contributions"] == 3 and released["rejected"] == 0
    stored = stored_contributions(stack, job.id)
    assert sorted(kind for kind, status, _ in stored.values() if status == "accepted") == [
        "browser",
        "browser",
        "python",
    ]
    config = job.data["config"]
    # Each browser sent exactly what the numpy kernel computes from its file's rows.
    for worker_id, X in zip(browser_ids, data, strict=True):
        assert stored[worker_id][2] == analytics.local(X, config)
    python_X = load_shard("digits", 2, 3)[0]
    exact = sum(exact_histogram(X, HISTOGRAM) for X in [*data, python_X])
    assert exact.sum() == 3 * HISTOGRAM["max_rows"]
    scale = released["noise_scale"]["hist"]
    assert scale == HISTOGRAM["max_rows"] / HISTOGRAM["epsilon"]
    errors = np.abs(np.array(released["hist"]) - exact)
    assert np.all(errors <= discrete_laplace_bound(scale, 0.999999)), (
        released["hist"],
        exact.tolist(),
    )

    # What left the browsers: their contributions, never a row or a value of their files.
    frames = [json.loads(line) for line in sent.split(b"\n") if b'"type":"contribution"' in line]
    assert sorted(tuple(f["result"]["hist"]) for f in frames) == sorted(
        tuple(stored[w][2]["hist"]) for w in browser_ids
    )
    for content in contents:
        rows = content.decode().splitlines()[1:]
        for row in rows:
            assert row.encode() not in sent
        for value in {v for row in rows[:40] for v in row.split(",")[:-1] if len(v) > 8}:
            assert value.encode() not in sent
        assert content[:64] not in sent


def test_a_paused_browser_is_not_asked_and_contributes_once_resumed(chromium, stack, tmp_path):
    client = Client(stack.base_url, stack.token)
    path = tmp_path / "volunteer.csv"
    X = write_csv(path, 0, 2)
    context = chromium.new_context()
    try:
        page, browser_id = open_with_file(
            context, f"{stack.base_url}/worker/join/{stack.enrollment_key}/", path, "paused"
        )
        stack.spawn_worker(stack.enroll("python-paused"), "1/2", dataset="digits")
        wait_for(lambda: len(connected(client)) == 2, 60, "two workers")
        page.click("#pause")
        wait_for(lambda: browser_id not in connected(client), 30, "the browser to pause")
        job = client.jobs.create(
            name="paused",
            type="analytics",
            kernel="analytics",
            config=HISTOGRAM,
            policy={"min_workers": 2, "epsilon_budget": 5.0, "deadline_s": 120},
        )
        job.start()
        wait_for(lambda: len(stored_contributions(stack, job.id)) == 1, 30, "a request")
        assert browser_id not in stored_contributions(stack, job.id)
        assert page.inner_text("#stat-contributions") == "0"
        assert job.refresh().status == "running"

        page.click("#pause")  # now labelled Resume
        job.wait(timeout=60)
        contributed(page, 1)
        page.screenshot(path=ARTIFACTS / "paused-resumed-contributed.png")
    finally:
        context.close()
    assert job.status == "completed", job.data
    kind, status, result = stored_contributions(stack, job.id)[browser_id]
    assert (kind, status) == ("browser", "accepted") and result == analytics.local(
        X, job.data["config"]
    )

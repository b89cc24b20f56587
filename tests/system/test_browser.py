"""Volunteers in real headless Chromium next to Python workers, on the real stack.

Chromium is Debian's (``make test`` installs it), driven by Playwright with
``executable_path``. Screenshots of the page's states go to ``test-artifacts/`` (not kept in
the repository).
"""

from __future__ import annotations

import contextlib
import csv
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import psutil
import pytest

from ccgsc_client import Client
from kernels import get_kernel, load_dataset, load_shard
from tests.stack import Stack
from tests.system.conftest import ARTIFACTS
from tests.system.sniffer import Sniffer
from tests.system.test_compute import most_in_flight
from tests.system.test_training import recomputed_models, wait_for

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Small chunks, so that updates of the digits models travel as resumable chunked uploads.
    stack = Stack(
        tmp_path_factory.mktemp("browser"),
        CCGSC_RECONNECT_GRACE_S="1",
        CCGSC_WORKER_TIMEOUT_S="20",
        CCGSC_CHUNK_BYTES="1024",
    )
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture
def volunteer(chromium, stack):
    """Opens fresh browser profiles on the tenant's enrollment link; closes them afterwards."""
    contexts = []

    def open_page(name: str):
        context = chromium.new_context()
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{stack.base_url}/worker/join/{stack.enrollment_key}/")
        page.screenshot(path=ARTIFACTS / f"{name}-opened.png")
        return page

    yield open_page
    for context in contexts:
        context.close()


def join(page, name: str) -> int:
    page.check("#consent")
    page.click("#join")
    page.wait_for_function(
        "document.getElementById('status').dataset.state === 'connected'", timeout=30000
    )
    page.screenshot(path=ARTIFACTS / f"{name}-connected.png")
    return int(page.inner_text("#stat-worker").lstrip("#"))


def connected(client: Client) -> dict[int, dict]:
    return {w["id"]: w for w in client.workers() if w["connected"]}


def test_three_browsers_and_three_python_workers_train_the_same_rounds(volunteer, stack):
    client = Client(stack.base_url, stack.token)
    before = set(connected(client))
    pages = [volunteer(f"mixed-{i}") for i in range(3)]
    browser_ids = [join(page, f"mixed-{i}") for i, page in enumerate(pages)]
    for i in range(3):
        stack.spawn_worker(stack.enroll(f"python-{i}"), f"{i}/3")
    wait_for(lambda: len(set(connected(client)) - before) == 6, 120, "six workers")
    job = client.jobs.create(
        name="mixed",
        kernel="softmax",
        config={"dataset": "digits", "epochs": 2},
        policy={
            "cohort_size": 6,
            "min_reports": 6,
            "max_rounds": 3,
            "round_deadline_s": 60,
            "selection_timeout_s": 1,
        },
    )
    job.start().wait(timeout=180)
    pages[0].screenshot(path=ARTIFACTS / "mixed-0-after-job.png")

    assert job.status == "completed", job.data
    rounds = job.rounds()
    assert [(r["number"], r["status"], r["participants"]) for r in rounds] == [
        (1, "closed", 6),
        (2, "closed", 6),
        (3, "closed", 6),
    ]
    per_kind = stack.sql(
        "SELECT w.kind, count(*) FROM rounds_assignment a JOIN jobs_worker w "
        "ON w.id = a.worker_id JOIN rounds_round r ON r.id = a.fl_round_id "
        "WHERE r.job_id = %s AND a.status = 'reported' GROUP BY w.kind ORDER BY w.kind",
        job.id,
    )
    assert per_kind == [("browser", 9), ("python", 9)]
    assert {
        row[0]
        for row in stack.sql(
            "SELECT worker_id FROM rounds_assignment a JOIN rounds_round r ON r.id = a.fl_round_id "
            "WHERE r.job_id = %s AND a.status = 'reported'",
            job.id,
        )
    } >= set(browser_ids)
    data = load_dataset("digits")
    kernel = get_kernel("softmax")
    accuracy = [
        kernel.evaluate(
            client.download_model(m["id"]), data.X_test, data.y_test, job.data["config"]
        )["accuracy"]
        for m in job.models()
    ]
    assert accuracy[-1] > 0.85 > accuracy[0]
    for _, stored, expected in recomputed_models(stack, job.id):
        np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)
    assert "round 3" in pages[0].inner_text("#stat-round")
    for page in pages:
        page.context.close()  # the next tests want the browser alone
    for proc in stack.workers:
        proc.terminate()
    wait_for(lambda: not connected(client), 30, "the workers to leave")


def write_csv(path: Path) -> bytes:
    X, y = load_shard("digits", 0, 4)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{j}" for j in range(X.shape[1])] + ["label"])
        writer.writerows(
            [[f"{v:.9f}" for v in row] + [int(label)] for row, label in zip(X, y, strict=True)]
        )
    return path.read_bytes()


def test_a_chosen_file_never_leaves_the_browser(chromium, stack, tmp_path):
    content = write_csv(tmp_path / "private.csv")
    rows = content.decode().splitlines()[1:]
    with Sniffer(stack.port) as sniffer:
        context = chromium.new_context()
        other_hosts: list[str] = []
        context.on(
            "request",
            lambda request: (
                other_hosts.append(request.url) if f":{sniffer.port}/" not in request.url else None
            ),
        )
        try:
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{sniffer.port}/worker/join/{stack.enrollment_key}/")
            page.check("input[name=source][value=file]")
            page.set_input_files("#data-file", str(tmp_path / "private.csv"))
            worker_id = join(page, "privacy")
            client = Client(stack.base_url, stack.token)
            job = client.jobs.create(
                name="privacy",
                kernel="softmax",
                config={"dataset": "digits"},
                policy={
                    "cohort_size": 1,
                    "min_reports": 1,
                    "max_rounds": 2,
                    "selection_timeout_s": 0,
                },
            )
            job.start().wait(timeout=60)
            page.screenshot(path=ARTIFACTS / "privacy-after-job.png")
        finally:
            context.close()
        sent = sniffer.sent_bytes()
    assert job.status == "completed"
    assert stack.sql(
        "SELECT count(*) FROM rounds_assignment WHERE worker_id = %s AND status = 'reported'",
        worker_id,
    ) == [(2,)]
    # The recording is real: it holds the hello and the chunked update frames.
    assert b'"type":"hello"' in sent and b'"type":"upload_begin"' in sent and b"CCG1" in sent
    assert other_hosts == []
    for row in rows:
        assert row.encode() not in sent
    for value in {v for row in rows[:40] for v in row.split(",")[:-1] if len(v) > 8}:
        assert value.encode() not in sent
    assert content[:64] not in sent


def test_pause_stops_work_mid_round_and_the_assignment_is_dropped(volunteer, stack):
    page = volunteer("pause")
    worker_id = join(page, "pause")
    client = Client(stack.base_url, stack.token)
    # A long local training, so that Pause lands while the browser is working.
    job = client.jobs.create(
        name="pause",
        kernel="mlp",
        config={"dataset": "digits", "hidden": 256, "epochs": 400},
        policy={
            "cohort_size": 1,
            "min_reports": 1,
            "max_rounds": 1,
            "round_deadline_s": 120,
            "selection_timeout_s": 0,
            "on_quorum_miss": "fail",
        },
    )
    job.start()
    page.wait_for_function(
        "document.getElementById('status').dataset.state === 'training'", timeout=30000
    )
    page.click("#pause")
    page.screenshot(path=ARTIFACTS / "pause-paused.png")
    wait_for(
        lambda: (
            stack.sql("SELECT status FROM rounds_assignment WHERE worker_id = %s", worker_id)
            == [("dropped",)]
        ),
        30,
        "the assignment to be dropped",
    )
    assert page.inner_text("#pause") == "Resume"
    assert client.jobs.get(job.id).refresh().status in ("failed", "running")


def test_a_reload_rejoins_as_the_same_worker(volunteer, stack):
    page = volunteer("reload")
    worker_id = join(page, "reload")
    enrolled = stack.sql("SELECT count(*) FROM jobs_worker")
    page.reload()
    page.wait_for_function(
        "document.getElementById('status').dataset.state === 'connected'", timeout=30000
    )
    page.screenshot(path=ARTIFACTS / "reload-rejoined.png")
    assert int(page.inner_text("#stat-worker").lstrip("#")) == worker_id
    assert stack.sql("SELECT count(*) FROM jobs_worker") == enrolled
    client = Client(stack.base_url, stack.token)
    wait_for(lambda: worker_id in connected(client), 10, "the worker to be connected")


def test_join_works_with_the_keyboard_alone(volunteer, stack):
    page = volunteer("keyboard")
    page.focus("body")
    for _ in range(40):  # tab to the consent box
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "consent":
            break
    page.keyboard.press("Space")
    assert page.is_checked("#consent")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "join"
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.getElementById('status').dataset.state === 'connected'", timeout=30000
    )
    page.screenshot(path=ARTIFACTS / "keyboard-joined.png")
    assert page.get_attribute("#status", "role") == "status"


def test_the_page_reads_at_phone_width(chromium, stack):
    context = chromium.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{stack.base_url}/worker/join/{stack.enrollment_key}/")
    page.screenshot(path=ARTIFACTS / "phone.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for control in ["#consent", "#data-file", "#label-column", "#daily-limit", "#cores"]:
        label = page.evaluate(
            "(selector) => { const el = document.querySelector(selector);"
            " return el.labels && el.labels.length ? el.labels[0].innerText : ''; }",
            control,
        )
        assert label.strip(), f"{control} has a label"
    context.close()


def test_an_unchanged_model_comes_from_the_browser_cache_after_a_reload(chromium, stack):
    with Sniffer(stack.port) as sniffer:
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{sniffer.port}/worker/join/{stack.enrollment_key}/")
            worker_id = join(page, "cache")
            client = Client(stack.base_url, stack.token)
            job = client.jobs.create(
                name="cache",
                kernel="mlp",
                config={"dataset": "digits", "hidden": 256, "epochs": 300},
                policy={
                    "cohort_size": 1,
                    "min_reports": 1,
                    "max_rounds": 1,
                    "round_deadline_s": 120,
                    "selection_timeout_s": 0,
                },
            )
            job.start()
            page.wait_for_function(
                "document.getElementById('status').dataset.state === 'training'", timeout=30000
            )
            page.reload()  # mid-training: the same model is offered again after the rejoin
            job.wait(timeout=120)
        finally:
            context.close()
        sent = sniffer.sent_bytes()
    assert job.status == "completed", job.data
    assert stack.sql(
        "SELECT count(*) FROM rounds_assignment a JOIN rounds_round r ON "
        "r.id = a.fl_round_id WHERE r.job_id = %s AND a.worker_id = %s AND "
        "a.status = 'reported'",
        job.id,
        worker_id,
    ) == [(1,)]
    # Offered twice (before and after the reload), asked for the model once.
    assert sent.count(b'"type":"accept"') == 2
    assert sent.count(b'"type":"model_request"') == 1


def write_png(path: Path, gray: np.ndarray) -> None:
    """A grayscale 8-bit PNG (no imaging library needed)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    height, width = gray.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in gray.astype(np.uint8))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_a_folder_of_images_trains_the_digits_model_on_the_device(chromium, stack, tmp_path):
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    folder = tmp_path / "my-digits"
    count = 300
    for i in range(count):
        ink = images[i].reshape(8, 8)
        gray = np.kron(255 - ink * 255 / 16, np.ones((4, 4)))  # 32×32, dark ink on white
        (folder / str(labels[i])).mkdir(parents=True, exist_ok=True)
        write_png(folder / str(labels[i]) / f"{i}.png", np.rint(gray))
    with Sniffer(stack.port) as sniffer:
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{sniffer.port}/worker/join/{stack.enrollment_key}/")
            page.check("input[name=source][value=images]")
            page.set_input_files("#data-folder", str(folder))
            worker_id = join(page, "images")
            assert "300 examples, 64 features" in page.inner_text("#stat-data")
            client = Client(stack.base_url, stack.token)
            job = client.jobs.create(
                name="images",
                kernel="softmax",
                config={"dataset": "digits", "epochs": 3},
                policy={
                    "cohort_size": 1,
                    "min_reports": 1,
                    "max_rounds": 2,
                    "selection_timeout_s": 0,
                },
            )
            job.start().wait(timeout=60)
        finally:
            context.close()
        sent = sniffer.sent_bytes()
    assert job.status == "completed"
    assert stack.sql(
        "SELECT num_samples FROM rounds_assignment a JOIN rounds_round r ON "
        "r.id = a.fl_round_id WHERE r.job_id = %s AND a.worker_id = %s",
        job.id,
        worker_id,
    ) == [(count,), (count,)]
    # Prepared as the server's digits were, the images teach a model that reads held-out digits.
    assert job.data["latest_model"]["metrics"]["accuracy"] > 0.8
    assert b"\x89PNG" not in sent and b"IDAT" not in sent


def test_a_browser_and_a_python_worker_validate_each_others_prime_counts(volunteer, stack):
    client = Client(stack.base_url, stack.token)
    browser_id = join(volunteer("compute"), "compute")
    stack.spawn_worker(stack.enroll("python-compute"), dataset=None)
    wait_for(lambda: len(connected(client)) == 2, 60, "two workers")
    job = client.jobs.create(
        name="primes",
        type="compute",
        kernel="primes",
        config={"lo": 1, "hi": 10**7},
        policy={"unit_seconds": 0.001, "replicas": 2, "quorum": 2, "spot_check_rate": 1.0},
    )
    job.start().wait(timeout=120)
    assert job.status == "completed", job.data
    assert job.result()["count"] == 664_579
    # Every unit was computed in the browser (JS) and in Python, and the two agreed.
    per_worker = dict(
        stack.sql(
            "SELECT r.worker_id, count(*) FROM jobs_unitreplica r JOIN jobs_workunit u "
            "ON u.id = r.unit_id WHERE u.job_id = %s AND r.status = 'valid' GROUP BY r.worker_id",
            job.id,
        )
    )
    units = stack.sql("SELECT count(*) FROM jobs_workunit WHERE job_id = %s", job.id)[0][0]
    assert (
        units > 1 and per_worker.get(browser_id) == units and sum(per_worker.values()) == 2 * units
    )
    for proc in stack.workers:
        proc.terminate()


def test_a_browser_given_two_cores_runs_two_units_at_once(volunteer, stack):
    client = Client(stack.base_url, stack.token)
    page = volunteer("two-cores")
    if page.evaluate("navigator.hardwareConcurrency") < 2:
        pytest.skip("this machine offers the browser a single core")
    page.select_option("#cores", "2")
    browser_id = join(page, "two-cores")
    wait_for(lambda: browser_id in connected(client), 30, "the browser")
    assert connected(client)[browser_id]["capabilities"]["slots"] == 2
    job = client.jobs.create(
        name="primes on two cores",
        type="compute",
        kernel="primes",
        config={"lo": 1, "hi": 10**8},
        policy={"unit_seconds": 0.02, "replicas": 1, "quorum": 1},
    )
    job.start().wait(timeout=120)
    assert job.status == "completed", job.data
    assert job.result()["count"] == 5_761_455
    rows = stack.sql(
        "SELECT r.worker_id, r.assigned_at, r.returned_at FROM jobs_unitreplica r "
        "JOIN jobs_workunit u ON u.id = r.unit_id WHERE u.job_id = %s",
        job.id,
    )
    assert len(rows) > 4 and {worker for worker, _, _ in rows} == {browser_id}
    assert most_in_flight([(a, r) for _, a, r in rows]) == 2  # both slots busy, never more
    # and the browser ran two at once, each in its own Web Worker
    page.wait_for_function(
        "document.getElementById('stat-units').textContent.endsWith('(at most 2 at once)')",
        timeout=10000,
    )
    page.screenshot(path=ARTIFACTS / "two-cores-after-job.png")


def chromium_cpu_seconds(during: float) -> float:
    """CPU seconds all Chromium processes use over the next ``during`` seconds."""

    def total() -> float:
        seconds = 0.0
        for proc in psutil.process_iter(["name"]):
            if "chrom" in (proc.info["name"] or ""):
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    seconds += times.user + times.system
        return seconds

    before = total()
    time.sleep(during)
    return total() - before


def test_pause_stops_a_unit_being_computed(volunteer, stack):
    client = Client(stack.base_url, stack.token)
    page = volunteer("pause-compute")
    join(page, "pause-compute")
    job = client.jobs.create(
        name="a long unit",
        type="compute",
        kernel="primes",
        config={"lo": 1, "hi": 10**11},
        policy={"unit_seconds": 30, "unit_deadline_s": 300, "replicas": 1, "quorum": 1},
    )
    job.start()
    page.wait_for_function(
        "document.getElementById('status').dataset.state === 'computing'", timeout=30000
    )
    assert chromium_cpu_seconds(1.0) > 0.6  # a core is busy with a unit of about 30 s
    page.click("#pause")
    page.wait_for_function(
        "document.getElementById('status').dataset.state === 'paused'", timeout=5000
    )
    paused_at = time.monotonic()
    # Its Web Worker is terminated; Chromium ends one busy in a loop within about 2 s.
    while chromium_cpu_seconds(0.5) > 0.1:
        assert time.monotonic() - paused_at < 5, "the unit kept computing after Pause"
    job.cancel()

"""Tests for the Director pages, its download route and its live-refresh socket."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import numpy as np
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps import testing
from apps.jobs.models import (
    AnalyticsContribution,
    Job,
    Tenant,
    UnitReplica,
    Worker,
    WorkUnit,
)
from apps.registry.models import ModelVersion
from apps.registry.services import model_version_create
from apps.rounds.models import Round
from apps.rounds.privacy import Ledger

User = get_user_model()


def make_user(username: str = "ops", *, staff: bool = True):
    return User.objects.create_user(username=username, password="pw-not-used", is_staff=staff)


def make_tenant(slug: str = "acme") -> Tenant:
    return Tenant.objects.create(name=slug.title(), slug=slug)


def make_job(tenant: Tenant, name: str = "digits", **fields) -> Job:
    fields.setdefault("kernel", "logreg")
    fields.setdefault("status", Job.Status.RUNNING)
    return Job.objects.create(tenant=tenant, name=name, **fields)


def make_model(job: Job, version: int = 0, *, size: int = 4, **fields) -> ModelVersion:
    weights = np.arange(size, dtype=np.float32) + version
    return model_version_create(job_id=job.id, version=version, weights=weights, **fields)


def make_round(job: Job, number: int, base_model: ModelVersion, **fields) -> Round:
    fields.setdefault("status", Round.Status.CLOSED)
    if fields["status"] in (Round.Status.CLOSED, Round.Status.FAILED):
        fields.setdefault("ended_at", timezone.now())
    return Round.objects.create(
        job=job, number=number, base_model=base_model, cohort_target=4, min_reports=2, **fields
    )


def make_worker(tenant: Tenant, name: str, **fields) -> Worker:
    return Worker.objects.create(
        tenant=tenant, name=name, token_hash=secrets.token_hex(32), **fields
    )


def closed_metrics(number: int) -> dict:
    return {
        "loss": 1.0 / number,
        "accuracy": 0.5 + number / 100,
        "train_loss": 1.2 / number,
        "train_accuracy": 0.4 + number / 100,
        "num_samples": 100 * number,
    }


def make_unit(job: Job, status: str = WorkUnit.Status.PENDING, *, cost: float = 1.0) -> WorkUnit:
    index = WorkUnit.objects.filter(job=job).count()
    return WorkUnit.objects.create(
        job=job, index=index, start=index * 10, stop=index * 10 + 10, cost=cost, status=status
    )


def make_replica(
    unit: WorkUnit, worker: Worker, status: str = UnitReplica.Status.VALID, *, seconds: float = 0.0
) -> UnitReplica:
    done = UnitReplica.Status
    returned = status in (done.RETURNED, done.VALID, done.REJECTED)
    return UnitReplica.objects.create(
        unit=unit,
        worker=worker,
        status=status,
        seconds=seconds if returned else None,
        deadline=timezone.now() + timedelta(minutes=5),
        returned_at=timezone.now() if returned else None,
    )


def text_of(html: str, pattern: str) -> str:
    """The text, tags stripped, of the first element the pattern's group captures."""
    found = re.search(pattern, html, re.S)
    assert found, pattern
    return re.sub(r"<[^>]+>|\s+", " ", found.group(1)).strip()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(make_user())
    return client


def director_paths() -> list[str]:
    return ["/director/", "/director/jobs/1/", "/director/workers/", "/director/models/1/download/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", director_paths())
def test_it_redirects_anonymous_users_to_the_login_page(client: Client, path: str):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
@pytest.mark.parametrize("path", director_paths())
def test_it_redirects_users_who_are_not_staff_to_the_login_page(client: Client, path: str):
    client.force_login(make_user("scientist", staff=False))

    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_the_job_list_shows_each_job_with_its_current_round_and_latest_accuracy(staff_client):
    tenant = make_tenant()
    trained = make_job(tenant, "trained")
    base = make_model(trained)
    make_round(trained, 1, base, metrics={"accuracy": 0.61})
    make_round(trained, 2, base, metrics={"accuracy": 0.87})
    make_round(trained, 3, base, status=Round.Status.TRAINING)
    fresh = make_job(tenant, "fresh", status=Job.Status.DRAFT)

    html = staff_client.get("/director/").content.decode()

    assert f'href="/director/jobs/{trained.id}/"' in html
    assert f'href="/director/jobs/{fresh.id}/"' in html
    assert "0.8700" in html and "0.6100" not in html
    assert re.search(r">\s*3\s*<span class=\"sub\">training</span>", html)
    assert 'href="/director/workers/"' in html and 'href="/api/docs/"' in html


@pytest.mark.django_db
def test_the_job_list_falls_back_to_training_accuracy_without_a_held_out_evaluation(
    staff_client,
):
    job = make_job(make_tenant())
    make_round(job, 1, make_model(job), metrics={"train_accuracy": 0.42})

    html = staff_client.get("/director/").content.decode()

    assert re.search(r"0\.4200\s*<span class=\"sub\">training</span>", html)


@pytest.mark.django_db
def test_the_job_list_takes_the_same_number_of_queries_for_one_job_or_many(staff_client):
    tenant = make_tenant()

    def queries_with(jobs: int) -> int:
        for _ in range(jobs - Job.objects.count()):
            job = make_job(tenant)
            make_round(job, 1, make_model(job), metrics=closed_metrics(1))
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get("/director/").status_code == 200
        return len(queries)

    assert queries_with(1) == queries_with(6)


@pytest.mark.django_db
def test_the_job_page_shows_each_rounds_participants(staff_client):
    job = make_job(make_tenant())
    base = make_model(job)
    for number, participants in [(1, 7), (2, 11), (3, 13)]:
        make_round(job, number, base, participants=participants, metrics=closed_metrics(number))
    make_round(job, 4, base, status=Round.Status.TRAINING, participants=17)

    html = staff_client.get(f"/director/jobs/{job.id}/").content.decode()

    shown = re.findall(r'data-col="participants">(\d+)<', html)
    assert sorted(int(n) for n in shown) == [7, 11, 13, 17]


@pytest.mark.django_db
def test_the_job_page_plots_one_point_per_closed_round(staff_client):
    job = make_job(make_tenant())
    base = make_model(job)
    for number in (1, 2, 3):
        make_round(job, number, base, metrics=closed_metrics(number))
    make_round(job, 4, base, status=Round.Status.FAILED, metrics={"loss": 9.0}, error="timeout")
    make_round(job, 4, base, attempt=2, status=Round.Status.TRAINING)

    html = staff_client.get(f"/director/jobs/{job.id}/").content.decode()

    loss = re.search(r'<polyline data-series="loss" points="([^"]*)"', html)
    accuracy = re.search(r'<polyline data-series="accuracy" points="([^"]*)"', html)
    assert len(loss.group(1).split()) == 3
    assert len(accuracy.group(1).split()) == 3
    assert html.count("<svg") == 2 and 'aria-label="Loss per round' in html


@pytest.mark.django_db
def test_the_job_page_shows_config_and_escapes_what_users_wrote(staff_client):
    job = make_job(
        make_tenant(),
        name="<script>alert(1)</script>",
        config={"dataset": "digits", "lr": 0.1},
        policy={"rounds": 5},
        error="boom <b>",
    )

    html = staff_client.get(f"/director/jobs/{job.id}/").content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;dataset&quot;: &quot;digits&quot;" in html
    assert "&quot;rounds&quot;: 5" in html
    assert "boom &lt;b&gt;" in html


@pytest.mark.django_db
def test_the_job_page_links_both_model_downloads(staff_client):
    job = make_job(make_tenant())
    model = make_model(job)

    html = staff_client.get(f"/director/jobs/{job.id}/").content.decode()

    assert f'href="/api/v1/models/{model.id}/download/"' in html
    assert f'href="/director/models/{model.id}/download/"' in html


@pytest.mark.django_db
def test_the_job_page_takes_the_same_number_of_queries_for_few_or_many_rounds(staff_client):
    job = make_job(make_tenant())
    base = make_model(job)

    def queries_with(rounds: int) -> int:
        for number in range(Round.objects.count() + 1, rounds + 1):
            model = make_model(job, number)
            make_round(job, number, base, metrics=closed_metrics(number))
            model.fl_round = Round.objects.get(job=job, number=number)
            model.save()
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(f"/director/jobs/{job.id}/").status_code == 200
        return len(queries)

    assert queries_with(1) == queries_with(5)


@pytest.mark.django_db
def test_the_job_page_is_404_for_an_unknown_job(staff_client):
    assert staff_client.get("/director/jobs/999999/").status_code == 404


@pytest.mark.django_db
def test_the_director_download_returns_the_artifact_bytes_to_staff_outside_the_tenant(
    staff_client,
):
    model = make_model(make_job(make_tenant()), 3, size=6)

    response = staff_client.get(f"/director/models/{model.id}/download/")

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    response.close()
    assert body == (np.arange(6, dtype=np.float32) + 3).astype("<f4").tobytes()
    assert response["X-Checksum-SHA256"] == model.sha256
    assert response["Content-Disposition"].startswith("attachment")


@pytest.mark.django_db
def test_the_director_download_is_404_when_the_artifact_is_gone(staff_client, media):
    model = make_model(make_job(make_tenant()))
    (media / model.artifact.name).unlink()

    assert staff_client.get(f"/director/models/{model.id}/download/").status_code == 404


@pytest.mark.django_db
def test_the_workers_page_lists_each_workers_connected_state(staff_client):
    tenant = make_tenant()
    now = timezone.now()
    online = make_worker(tenant, "online", channel_name="specific.a!b", last_seen=now)
    silent = make_worker(
        tenant, "silent", channel_name="specific.a!c", last_seen=now - timedelta(hours=1)
    )
    offline = make_worker(tenant, "offline", last_seen=now - timedelta(days=1))

    html = staff_client.get("/director/workers/").content.decode()

    def connection_cell(worker: Worker) -> str:
        row = re.search(rf'<tr data-worker="{worker.id}">(.*?)</tr>', html, re.S).group(1)
        cell = re.search(r'data-col="connection">(.*?)</td>', row, re.S).group(1)
        return re.sub(r"<[^>]+>|\s+", " ", cell).strip()

    assert connection_cell(online) == "connected"
    assert connection_cell(silent) == "connected, silent"
    assert connection_cell(offline) == "offline"
    assert "2 connected of 3 enrolled" in html


@pytest.mark.django_db
def test_the_workers_page_takes_the_same_number_of_queries_for_few_or_many_workers(
    staff_client,
):
    tenants = [make_tenant("one"), make_tenant("two"), make_tenant("three")]

    def queries_with(workers: int) -> int:
        for i in range(Worker.objects.count(), workers):
            make_worker(tenants[i % 3], f"w{i}")
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get("/director/workers/").status_code == 200
        return len(queries)

    assert queries_with(1) == queries_with(9)


@pytest.mark.django_db
def test_the_compute_job_page_counts_units_by_stage_with_a_labelled_progress_bar(staff_client):
    job = testing.make_compute_job(make_tenant(), config={"lo": 0, "hi": 199})  # [0, 200)
    stages = WorkUnit.Status
    for status, how_many in [
        (stages.DONE, 3),
        (stages.VALIDATED, 1),
        (stages.ASSIGNED, 2),
        (stages.RETURNED, 1),
        (stages.DISPUTED, 1),
        (stages.FAILED, 1),
        (stages.PENDING, 3),
    ]:
        for _ in range(how_many):
            make_unit(job, status)

    html = staff_client.get(f"/director/jobs/{job.id}/").content.decode()

    def count(name: str) -> str:
        return text_of(html, rf'data-count="{name}">(.*?)</dd>')

    assert [count(n) for n in ("finished", "in_flight", "disputed", "failed", "pending")] == [
        "4",
        "3",
        "1",
        "1",
        "3",
    ]
    # Twelve units of ten cut so far: 60% of the space; four finished: 20%.
    assert '<progress id="unit-progress" max="100" value="20">' in html
    assert (
        '<label for="unit-progress">Space done or validated: 20% (4 of the 12 units cut so far, '
        "which cover 60% of the space)</label>"
    ) in html
    assert 'id="rounds-heading"' not in html and "<svg" not in html


@pytest.mark.django_db
def test_the_compute_job_page_shows_each_workers_throughput_on_this_job(staff_client):
    tenant = make_tenant()
    job = testing.make_compute_job(tenant)
    other_job = testing.make_compute_job(tenant)
    steady = testing.make_compute_worker(tenant)
    shaky = testing.make_compute_worker(tenant)
    idle = testing.make_compute_worker(tenant)
    Worker.objects.filter(pk=steady.pk).update(credit=12.5, trust=0.9)
    Worker.objects.filter(pk=shaky.pk).update(name="<b>shaky</b>", credit=0.25, trust=0.125)
    replicas = UnitReplica.Status
    for cost in (2.0, 3.0):
        unit = make_unit(job, WorkUnit.Status.DONE, cost=cost)
        make_replica(unit, steady, replicas.VALID, seconds=1.5)
        make_replica(unit, shaky, replicas.REJECTED, seconds=0.5)
    make_replica(make_unit(job, WorkUnit.Status.ASSIGNED), shaky, replicas.ASSIGNED)
    make_replica(make_unit(other_job, WorkUnit.Status.DONE, cost=7.0), idle, replicas.VALID)

    html = staff_client.get(f"/director/jobs/{job.id}/").content.decode()

    def row(worker: Worker) -> dict[str, str]:
        tr = re.search(rf'<tr data-throughput="{worker.id}">(.*?)</tr>', html, re.S).group(1)
        return dict(re.findall(r'data-col="(\w+)">([^<]*)<', tr))

    assert row(steady) == {
        "returned": "2",
        "valid": "2",
        "rejected": "0",
        "seconds": "3.00",
        "earned": "5.00",
        "credit": "12.50",
        "trust": "0.900",
    }
    assert row(shaky) == {
        "returned": "2",
        "valid": "0",
        "rejected": "2",
        "seconds": "1.00",
        "earned": "0.00",
        "credit": "0.25",
        "trust": "0.125",
    }
    assert "&lt;b&gt;shaky&lt;/b&gt;" in html and "<b>shaky</b>" not in html
    assert f'data-throughput="{idle.id}"' not in html


@pytest.mark.django_db
def test_the_compute_job_page_shows_the_result_once_completed(staff_client):
    job = testing.make_compute_job(make_tenant())
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, result={"count": 9592})

    running = staff_client.get(f"/director/jobs/{job.id}/").content.decode()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.COMPLETED)
    completed = staff_client.get(f"/director/jobs/{job.id}/").content.decode()

    assert 'id="job-result"' not in running
    assert text_of(completed, r'<pre class="json" id="job-result">(.*?)</pre>') == (
        "{ &quot;count&quot;: 9592 }"
    )


@pytest.mark.django_db
def test_the_compute_job_page_takes_the_same_number_of_queries_for_few_or_many_units(
    staff_client,
):
    tenant = make_tenant()
    job = testing.make_compute_job(tenant)
    workers = [testing.make_compute_worker(tenant) for _ in range(4)]

    def queries_with(units: int) -> int:
        for i in range(WorkUnit.objects.count(), units):
            unit = make_unit(job, WorkUnit.Status.DONE)
            make_replica(unit, workers[i % 4], seconds=1.0)
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(f"/director/jobs/{job.id}/").status_code == 200
        return len(queries)

    assert queries_with(1) == queries_with(12)


@pytest.mark.django_db
def test_the_analytics_job_page_shows_the_privacy_spend_and_released_statistic(staff_client):
    tenant = make_tenant()
    job = testing.make_analytics_job(
        tenant,
        config={"statistic": "count", "max_rows": 100, "epsilon": 0.5},
        policy={"epsilon_budget": 2.0},
    )
    ledger = Ledger.from_dict(job.privacy)
    ledger.charge(0.5, label=f"job {job.id} release")
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.COMPLETED,
        privacy=ledger.to_dict(),
        result={"count": 41.7, "contributions": 2, "rejected": 1},
    )
    outcomes = AnalyticsContribution.Status
    for outcome in (outcomes.ACCEPTED, outcomes.ACCEPTED, outcomes.REJECTED, outcomes.REQUESTED):
        AnalyticsContribution.objects.create(
            job=job, worker=testing.make_data_worker(tenant), status=outcome
        )

    html = staff_client.get(f"/director/jobs/{job.id}/").content.decode()

    assert text_of(html, r'data-fact="epsilon-spent">(.*?)</dd>') == "0.5000"
    assert text_of(html, r'data-fact="epsilon-budget">(.*?)</dd>') == "2"
    counts = [text_of(html, rf'data-count="{n}">(.*?)</dd>') for n in ("accepted", "rejected")]
    assert counts + [text_of(html, r'data-count="pending">(.*?)</dd>')] == ["2", "1", "1"]
    released = text_of(html, r'<pre class="json" id="job-released">(.*?)</pre>')
    assert "&quot;count&quot;: 41.7" in released
    assert "<svg" not in html and 'id="units-heading"' not in html


@pytest.mark.django_db
def test_the_analytics_job_page_says_when_nothing_is_released_yet(staff_client):
    job = testing.make_analytics_job(make_tenant())

    html = staff_client.get(f"/director/jobs/{job.id}/").content.decode()

    assert "Nothing released yet." in html
    assert text_of(html, r'data-fact="epsilon-spent">(.*?)</dd>') == "0"


@pytest.mark.django_db
def test_the_analytics_job_page_takes_the_same_number_of_queries_for_few_or_many_workers(
    staff_client,
):
    tenant = make_tenant()
    job = testing.make_analytics_job(tenant)

    def queries_with(contributions: int) -> int:
        for _ in range(AnalyticsContribution.objects.count(), contributions):
            AnalyticsContribution.objects.create(
                job=job,
                worker=testing.make_data_worker(tenant),
                status=AnalyticsContribution.Status.ACCEPTED,
            )
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(f"/director/jobs/{job.id}/").status_code == 200
        return len(queries)

    assert queries_with(1) == queries_with(6)


@pytest.mark.django_db
def test_the_workers_page_shows_each_workers_credit_and_trust(staff_client):
    tenant = make_tenant()
    trusted = make_worker(tenant, "trusted", credit=1234.5, trust=0.97)
    fresh = make_worker(tenant, "fresh")

    html = staff_client.get("/director/workers/").content.decode()

    def cell(worker: Worker, column: str) -> str:
        row = re.search(rf'<tr data-worker="{worker.id}">(.*?)</tr>', html, re.S).group(1)
        return text_of(row, rf'data-col="{column}">(.*?)</td>')

    assert (cell(trusted, "credit"), cell(trusted, "trust")) == ("1234.50", "0.970")
    assert (cell(fresh, "credit"), cell(fresh, "trust")) == ("0.00", "0.500")
    assert '<th scope="col" class="num">Credit</th>' in html


@pytest.mark.django_db
def test_the_workers_page_shows_compute_slots_and_measured_speeds(staff_client):
    tenant = make_tenant()
    busy = make_worker(
        tenant,
        "busy",
        capabilities={"kernels": ["primes", "sweep"], "slots": 4},
        compute_speeds={"sweep": 0.5, "primes": 1.25},
    )
    new = make_worker(tenant, "new", capabilities={"kernels": ["montecarlo"]})
    trainer = make_worker(tenant, "trainer", capabilities={"kernels": ["softmax"]})

    html = staff_client.get("/director/workers/").content.decode()

    def cell(worker: Worker) -> str:
        row = re.search(rf'<tr data-worker="{worker.id}">(.*?)</tr>', html, re.S).group(1)
        return text_of(row, r'data-col="compute">(.*?)</td>')

    assert cell(busy) == "4 slots; primes 1.25/s; sweep 0.50/s"
    assert cell(new) == "1 slot"
    assert cell(trainer) == "—"


@pytest.fixture
def session_cookie(transactional_db) -> bytes:
    client = Client()
    client.force_login(make_user())
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
async def socket_db_connections():
    """Close the connection the socket's session lookup opened in the sync worker thread."""
    yield
    await database_sync_to_async(connections.close_all)()


def director_socket(cookie: bytes | None = None) -> WebsocketCommunicator:
    from ccgsc.asgi import application

    headers = [(b"origin", b"http://testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, "/ws/director/", headers=headers)


@pytest.mark.django_db(transaction=True)
async def test_the_director_socket_rejects_anonymous_users():
    socket = director_socket()

    connected, code = await socket.connect()

    assert not connected
    assert code == 4403


@pytest.mark.django_db(transaction=True)
async def test_the_director_socket_relays_a_job_changed_event_to_staff(
    session_cookie, socket_db_connections
):
    socket = director_socket(session_cookie)
    connected, _ = await socket.connect()
    assert connected

    await get_channel_layer().group_send("director", {"type": "job.changed", "job": 42})

    assert await socket.receive_json_from(timeout=2) == {"type": "job.changed", "job": 42}
    await socket.disconnect()

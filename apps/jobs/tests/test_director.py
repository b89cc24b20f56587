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

from apps.jobs.models import Job, Tenant, Worker
from apps.registry.models import ModelVersion
from apps.registry.services import model_version_create
from apps.rounds.models import Round

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

"""The volunteer's side: consent at enrollment, the worker page, JS kernels and demo data."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.jobs.models import Worker
from apps.rounds.selectors import eligible_workers
from apps.testing import make_job, make_worker
from kernels import load_shard

pytestmark = pytest.mark.django_db


def enroll(tenant, **extra):
    return APIClient().post(
        "/api/v1/workers/enroll/",
        {"enrollment_key": tenant.enrollment_key, "kind": "browser", **extra},
        format="json",
    )


def test_a_browser_volunteer_cannot_enroll_without_consenting(tenant) -> None:
    response = enroll(tenant)
    assert response.status_code == 400 and "consent_version" in response.json()
    assert not Worker.objects.exists()


def test_consent_is_recorded_on_the_server_at_enrollment(tenant) -> None:
    response = enroll(tenant, consent_version="1")
    worker = Worker.objects.get(pk=response.json()["worker"])
    assert worker.kind == "browser" and worker.consent_version == "1" and worker.consented_at


def test_a_browser_worker_without_consent_is_never_selected(tenant) -> None:
    worker, _ = make_worker(tenant)
    Worker.objects.filter(pk=worker.pk).update(kind="browser", consented_at=None)
    assert eligible_workers(make_job(tenant)) == []
    Worker.objects.filter(pk=worker.pk).update(consent_version="1", consented_at=timezone.now())
    assert [w.pk for w in eligible_workers(make_job(tenant))] == [worker.pk]


def test_the_enrollment_link_opens_the_page_with_its_key(client, tenant) -> None:
    page = client.get(f"/worker/join/{tenant.enrollment_key}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert f'data-enrollment-key="{tenant.enrollment_key}"' in body
    assert "Your data never leaves this device" in body and 'role="status"' in body
    assert client.get("/worker/join/not-a-key/").status_code == 404
    assert 'data-enrollment-key=""' in client.get("/worker/").content.decode()


def test_the_js_kernels_are_served_from_beside_their_numpy_twins(client) -> None:
    response = client.get("/worker/kernels/softmax.js")
    assert response.status_code == 200 and "javascript" in response["Content-Type"]
    assert b"export function train" in b"".join(response.streaming_content)
    assert client.get("/worker/kernels/settings.js").status_code == 404


def test_demo_data_is_a_shard_for_the_worker_with_its_token(tenant) -> None:
    worker, token = make_worker(tenant)
    api = APIClient()
    assert api.get("/api/v1/workers/demo-data/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Worker {token}")
    body = api.get("/api/v1/workers/demo-data/?dataset=digits").json()
    X, y = load_shard("digits", worker.pk % 10, 10, "iid", 0)
    assert body["demo"] is True and body["shard"] == f"{worker.pk % 10}/10"
    assert (body["n"], body["d"]) == X.shape and body["y"] == y.tolist()
    assert api.get("/api/v1/workers/demo-data/?dataset=../../etc").status_code == 400
    api.credentials(HTTP_AUTHORIZATION="Worker nope")
    assert api.get("/api/v1/workers/demo-data/").status_code == 401


def test_feature_scaling_is_the_training_splits_mean_and_deviation(tenant) -> None:
    from kernels import load_dataset

    _, token = make_worker(tenant)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Worker {token}")
    body = api.get("/api/v1/workers/feature-scaling/?dataset=digits").json()
    data = load_dataset("digits")
    raw = data.X_train * body["std"] + body["mean"]  # undo the standardization
    assert len(body["mean"]) == len(body["std"]) == 64
    assert abs(raw.min()) < 1e-3 and abs(raw.max() - 16) < 1e-3  # digits ink runs 0 to 16

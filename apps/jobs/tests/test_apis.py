"""The REST API: authentication, tenant scoping, validation and the job life cycle."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from apps.jobs.models import Job, Worker
from apps.registry.services import model_version_create
from apps.testing import make_job, make_tenant, make_user, make_worker
from ccgsc_client import wire

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


@pytest.fixture
def tenant():
    return make_tenant()


@pytest.fixture
def api(tenant):
    return client_for(make_user(tenant))


JOB = {
    "name": "digits",
    "type": "train",
    "kernel": "softmax",
    "config": {"dataset": "digits", "lr": 0.05},
    "policy": {"cohort_size": 4},
}


def test_every_endpoint_needs_a_token() -> None:
    for path in ["/api/v1/kernels/", "/api/v1/jobs/", "/api/v1/workers/", "/api/v1/jobs/1/"]:
        assert APIClient().get(path).status_code == 401


def test_it_lists_the_kernels_with_their_config_schemas(api) -> None:
    kernels = {k["name"]: k for k in api.get("/api/v1/kernels/").json()}
    assert {"softmax", "mlp"} <= set(kernels)
    assert kernels["mlp"]["config_schema"]["properties"]["hidden"]["type"] == "integer"


def test_it_creates_a_draft_job_with_its_config_and_policy_resolved(api, tenant) -> None:
    response = api.post("/api/v1/jobs/", JOB, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft" and body["config"]["n_features"] == 64
    assert body["config"]["lr"] == 0.05 and body["policy"]["min_reports"] == 4 * 8 // 10 + 1
    assert Job.objects.get(pk=body["id"]).tenant == tenant


@pytest.mark.parametrize(
    "change,field",
    [
        ({"kernel": "nope"}, "kernel"),
        ({"type": "bake"}, "type"),
        ({"config": {"dataset": "digits", "lr": -1}}, "config"),
        ({"config": {"dataset": "digits", "bogus": 1}}, "config"),
        ({"policy": {"cohort_size": 0}}, "policy"),
        ({"policy": {"cohort_size": 2, "min_reports": 3}}, "policy"),
        ({"name": ""}, "name"),
    ],
)
def test_an_invalid_job_is_a_400_naming_the_field(api, change, field) -> None:
    response = api.post("/api/v1/jobs/", {**JOB, **change}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Job.objects.exists()


def test_another_tenants_job_is_a_404(api) -> None:
    other = make_job(make_tenant())
    for path in ["", "rounds/", "models/"]:
        assert api.get(f"/api/v1/jobs/{other.id}/{path}").status_code == 404
    assert api.post(f"/api/v1/jobs/{other.id}/start/").status_code == 404
    assert api.get("/api/v1/jobs/").json()["count"] == 0


def test_start_pause_and_cancel_move_the_job_through_its_states(api, tenant) -> None:
    job = api.post("/api/v1/jobs/", JOB, format="json").json()
    started = api.post(f"/api/v1/jobs/{job['id']}/start/").json()
    assert started["status"] == "running" and started["latest_model"]["version"] == 0
    rounds = api.get(f"/api/v1/jobs/{job['id']}/rounds/").json()["results"]
    assert [(r["number"], r["status"]) for r in rounds] == [(1, "selecting")]
    assert api.post(f"/api/v1/jobs/{job['id']}/pause/").json()["status"] == "paused"
    assert api.post(f"/api/v1/jobs/{job['id']}/cancel/").json()["status"] == "cancelled"
    again = api.post(f"/api/v1/jobs/{job['id']}/start/")
    assert again.status_code == 400 and "non_field_errors" in again.json()


def test_the_running_job_quota_is_enforced(api, tenant) -> None:
    tenant.max_running_jobs = 1
    tenant.save()
    first = api.post("/api/v1/jobs/", JOB, format="json").json()
    second = api.post("/api/v1/jobs/", JOB, format="json").json()
    assert api.post(f"/api/v1/jobs/{first['id']}/start/").status_code == 200
    assert api.post(f"/api/v1/jobs/{second['id']}/start/").status_code == 400


def test_a_model_downloads_with_its_hash(api, tenant) -> None:
    job = make_job(tenant)
    weights = np.arange(15, dtype=np.float32)
    model = model_version_create(job_id=job.id, version=0, weights=weights)
    listed = api.get(f"/api/v1/jobs/{job.id}/models/").json()["results"]
    assert listed[0]["sha256"] == model.sha256
    response = api.get(listed[0]["download"])
    data = b"".join(response.streaming_content)
    assert response["X-Checksum-SHA256"] == wire.sha256_hex(data) == model.sha256
    np.testing.assert_array_equal(wire.decode_tensor(data, "f32", 15), weights)
    stranger = client_for(make_user(make_tenant()))
    assert stranger.get(listed[0]["download"]).status_code == 404


def test_enrolling_with_the_tenant_key_returns_a_token_once(tenant) -> None:
    response = APIClient().post(
        "/api/v1/workers/enroll/",
        {"enrollment_key": tenant.enrollment_key, "name": "lab-1"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    worker = Worker.objects.get(pk=body["worker"])
    assert worker.tenant == tenant and body["token"] not in worker.token_hash
    bad = APIClient().post("/api/v1/workers/enroll/", {"enrollment_key": "wrong"}, format="json")
    assert bad.status_code == 400 and "enrollment_key" in bad.json()


def test_the_worker_quota_is_enforced(tenant) -> None:
    tenant.max_workers = 1
    tenant.save()
    make_worker(tenant)
    response = APIClient().post(
        "/api/v1/workers/enroll/", {"enrollment_key": tenant.enrollment_key}, format="json"
    )
    assert response.status_code == 400


def test_workers_are_listed_for_their_own_tenant_only(api, tenant) -> None:
    mine, _ = make_worker(tenant)
    make_worker(make_tenant())
    results = api.get("/api/v1/workers/").json()["results"]
    assert [w["id"] for w in results] == [mine.id] and results[0]["connected"] is True


def test_a_user_of_several_tenants_names_one_in_a_header(tenant) -> None:
    user = make_user(tenant)
    other = make_tenant()
    user.memberships.create(tenant=other)
    api = client_for(user)
    assert api.get("/api/v1/jobs/").status_code == 403
    make_job(other)
    response = api.get("/api/v1/jobs/", HTTP_X_CCGSC_TENANT=other.slug)
    assert response.status_code == 200 and response.json()["count"] == 1


def test_the_openapi_schema_and_docs_are_served(api) -> None:
    schema = api.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/jobs/{job_id}/start/" in schema.content
    docs = api.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_a_viewer_may_read_but_not_create_or_start_jobs(tenant) -> None:
    viewer = client_for(make_user(tenant, role="viewer"))
    job = make_job(tenant)
    assert viewer.get(f"/api/v1/jobs/{job.id}/").status_code == 200
    assert viewer.post("/api/v1/jobs/", JOB, format="json").status_code == 403
    assert viewer.post(f"/api/v1/jobs/{job.id}/start/").status_code == 403


def test_a_model_larger_than_the_tenant_allows_is_refused(api, tenant) -> None:
    tenant.max_model_bytes = 1000  # softmax on digits has 650 float32 parameters
    tenant.save()
    response = api.post("/api/v1/jobs/", JOB, format="json")
    assert response.status_code == 400 and "config" in response.json()

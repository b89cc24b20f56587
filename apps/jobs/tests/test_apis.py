"""The REST API: authentication, tenant scoping, validation and the job life cycle."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from apps.jobs import analytics, compute
from apps.jobs.models import Job, Worker, WorkUnit
from apps.registry.services import model_version_create
from apps.testing import (
    make_analytics_job,
    make_compute_job,
    make_compute_worker,
    make_data_worker,
    make_job,
    make_tenant,
    make_user,
    make_worker,
)
from ccgsc_client import wire

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


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
    assert (results[0]["credit"], results[0]["trust"]) == (0.0, 0.5)


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


COMPUTE = {
    "name": "primes",
    "type": "compute",
    "kernel": "primes",
    "config": {"lo": 1, "hi": 1_000_000},
    "policy": {"unit_seconds": 1e-4},
}


def test_it_lists_the_compute_kernels_with_their_kind(api) -> None:
    kernels = {k["name"]: k for k in api.get("/api/v1/kernels/").json()}
    assert {k: kernels[k]["kind"] for k in ("primes", "montecarlo", "sweep", "softmax")} == {
        "primes": "compute",
        "montecarlo": "compute",
        "sweep": "compute",
        "softmax": "train",
    }
    assert kernels["primes"]["config_schema"]["properties"]["hi"]["type"] == "integer"


def test_it_creates_a_compute_job_with_its_config_and_policy_resolved(api) -> None:
    response = api.post("/api/v1/jobs/", {**COMPUTE, "policy": {}}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["type"] == "compute" and body["config"] == {"lo": 1, "hi": 1_000_000}
    assert body["policy"] == {
        "unit_seconds": 5,
        "unit_deadline_s": 60,
        "max_attempts": 3,
        "replicas": 2,
        "quorum": 2,
        "max_replicas": 5,
        "spot_check_rate": 0.1,
    }


@pytest.mark.parametrize(
    "change, field",
    [
        ({"kernel": "softmax"}, "kernel"),
        ({"config": {"lo": 10, "hi": 5}}, "config"),
        ({"config": {"lo": -1}}, "config"),
        ({"policy": {"max_attempts": 0}}, "policy"),
        ({"policy": {"cohort_size": 4}}, "policy"),
        ({"policy": {"unit_seconds": 1e-12}}, "policy"),
        ({"policy": {"replicas": 6}}, "policy"),
        ({"policy": {"replicas": 2, "quorum": 3}}, "policy"),
        ({"policy": {"replicas": 3, "max_replicas": 2}}, "policy"),
    ],
)
def test_an_invalid_compute_job_is_a_400_naming_the_field(api, change, field) -> None:
    response = api.post("/api/v1/jobs/", {**COMPUTE, **change}, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


def test_a_started_compute_job_lists_its_units_page_by_page(api, tenant) -> None:
    for _ in range(5):
        make_compute_worker(tenant)
    job_id = api.post("/api/v1/jobs/", COMPUTE, format="json").json()["id"]
    assert api.post(f"/api/v1/jobs/{job_id}/start/").status_code == 200
    assert compute.units_dispatch(tenant_id=tenant.id) == 5  # three units, two replicas each
    count = WorkUnit.objects.filter(job_id=job_id).count()
    page = api.get(f"/api/v1/jobs/{job_id}/units/?limit=2").json()
    assert page["count"] == count == 3 and [u["index"] for u in page["results"]] == [0, 1]
    first = page["results"][0]
    assert first["start"] == 1 and first["status"] == "assigned"
    assert (first["replicas"], first["quorum"], first["result"]) == (2, 2, None)
    other = make_compute_job(make_tenant())
    assert api.get(f"/api/v1/jobs/{other.id}/units/").status_code == 404
    progress = api.get(f"/api/v1/jobs/{job_id}/").json()["progress"]
    cut = sum(u.stop - u.start for u in WorkUnit.objects.filter(job_id=job_id))
    assert progress == {
        "total": 3,
        "finished": 0,
        "in_flight": 3,
        "disputed": 0,
        "failed": 0,
        "pending": 0,
        "percent": 0,
        "cut_percent": 100 * cut // 1_000_000,
    }
    assert api.post("/api/v1/jobs/", JOB, format="json").json()["progress"] is None


def test_a_compute_jobs_result_is_a_404_until_it_completes(api, tenant) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant, policy={"unit_seconds": 2e-5, "replicas": 1})
    api.post(f"/api/v1/jobs/{job.id}/start/")
    assert api.get(f"/api/v1/jobs/{job.id}/result/").status_code == 404
    while compute.unit_dispatch(worker_id=worker.id):
        unit = WorkUnit.objects.get(replicas__worker=worker, replicas__status="assigned")
        result = {"start": unit.start, "stop": unit.stop, "count": 0}
        compute.unit_record_result(worker_id=worker.id, unit_id=unit.id, result=result, seconds=1)
    compute.job_reduce(job_id=job.id)
    response = api.get(f"/api/v1/jobs/{job.id}/result/")
    assert response.status_code == 200, response.json()
    assert response.json()["result"] == {"lo": 1, "hi": 100_000, "count": 0}
    assert api.get(f"/api/v1/jobs/{make_job(tenant).id}/result/").status_code == 404


ANALYTICS_JOB = {
    "name": "pixel histogram",
    "type": "analytics",
    "kernel": "analytics",
    "config": {"statistic": "histogram", "lo": 0, "hi": 16, "bins": 4, "max_rows": 50},
    "policy": {"min_workers": 3, "epsilon_budget": 2.0},
}


def test_it_creates_an_analytics_job_with_its_config_and_policy_resolved(api) -> None:
    config = {**ANALYTICS_JOB["config"], "epsilon": 0.5}
    response = api.post("/api/v1/jobs/", {**ANALYTICS_JOB, "config": config}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["config"]["edges"] == [0.0, 4.0, 8.0, 12.0, 16.0]
    assert body["policy"] == {"min_workers": 3, "epsilon_budget": 2.0, "deadline_s": 600}
    assert body["privacy"] == {"epsilon_spent": 0.0, "epsilon_budget": 2.0}


@pytest.mark.parametrize(
    "change,field,message",
    [
        ({"config": {"statistic": "median"}}, "config", "statistic"),
        ({"config": {"statistic": "sum", "lo": 1}}, "config", "hi: Required"),
        ({"config": {"statistic": "count", "epsilon": 1}}, "config", "max_rows: Required"),
        ({"config": {"statistic": "count", "bins": 3}}, "config", "bins: Not used"),
        ({"policy": {"min_workers": 0}}, "policy", "min_workers"),
        ({"policy": {"epsilon_budget": -1}}, "policy", "epsilon_budget"),
        ({"policy": {"quorum": 2}}, "policy", "quorum"),
        ({"kernel": "primes"}, "kernel", "analytics"),
    ],
)
def test_it_rejects_an_invalid_analytics_job_with_field_errors(api, change, field, message) -> None:
    response = api.post("/api/v1/jobs/", {**ANALYTICS_JOB, **change}, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {field}, errors
    assert any(message in text for text in errors[field]), errors


def test_an_analytics_job_result_has_the_release_and_the_epsilon_spent(api, tenant) -> None:
    workers = [make_data_worker(tenant) for _ in range(2)]
    config = {"statistic": "count", "max_rows": 10, "epsilon": 0.25}
    job = make_analytics_job(tenant, config=config, policy={"epsilon_budget": 1.0})
    assert api.post(f"/api/v1/jobs/{job.id}/start/").status_code == 200
    assert api.get(f"/api/v1/jobs/{job.id}/result/").status_code == 404
    for contribution, worker in zip(job.contributions.order_by("worker_id"), workers, strict=True):
        analytics.contribution_record(
            worker_id=worker.id, contribution_id=contribution.id, result={"count": 10}
        )
    analytics.job_release(job_id=job.id)

    body = api.get(f"/api/v1/jobs/{job.id}/result/").json()
    assert body["result"]["statistic"] == "count" and isinstance(body["result"]["count"], int)
    assert body["result"]["noise_scale"] == {"count": 40.0}
    assert body["epsilon_spent"] == 0.25 and body["epsilon_budget"] == 1.0
    detail = api.get(f"/api/v1/jobs/{job.id}/").json()
    assert detail["status"] == "completed"
    assert detail["privacy"] == {"epsilon_spent": 0.25, "epsilon_budget": 1.0}

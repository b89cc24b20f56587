"""Analytics jobs on the real database: contribution requests, bounds, the charged release."""

from __future__ import annotations

import numpy as np
import pytest

from apps.jobs import analytics
from apps.jobs import services as job_services
from apps.jobs.models import AnalyticsContribution, Job, Worker
from apps.rounds.privacy import Ledger
from apps.testing import make_analytics_job, make_data_worker, make_tenant, make_worker
from kernels import analytics as kernel

pytestmark = pytest.mark.django_db

HISTOGRAM = {
    "statistic": "histogram",
    "column": 0,
    "lo": 0.0,
    "hi": 4.0,
    "bins": 4,
    "max_rows": 10,
    "epsilon": 1.0,
}


def start(job: Job, capture) -> list[AnalyticsContribution]:
    with capture(execute=True):
        job_services.job_start(job_id=job.id)
    return list(job.contributions.order_by("id"))


def contribute(contribution: AnalyticsContribution, result: dict, capture) -> str:
    with capture(execute=True):
        return analytics.contribution_record(
            worker_id=contribution.worker_id, contribution_id=contribution.id, result=result
        )


def rows(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(-1, 1)


def test_starting_asks_each_connected_worker_with_data_for_one_contribution(
    tenant, sent, django_capture_on_commit_callbacks
) -> None:
    with_data = [make_data_worker(tenant) for _ in range(2)]
    make_worker(tenant)  # no data
    make_data_worker(make_tenant())  # another tenant's
    job = make_analytics_job(tenant, config=HISTOGRAM)
    contributions = start(job, django_capture_on_commit_callbacks)

    assert sorted(c.worker_id for c in contributions) == sorted(w.id for w in with_data)
    assert {c.status for c in contributions} == {"requested"}
    assert sorted(frame["contribution"] for _, frame in sent) == [c.id for c in contributions]
    assert all(frame["type"] == "contribute" and frame["config"] == job.config for _, frame in sent)


def test_a_worker_is_asked_once_per_job_even_when_it_says_hello_again(
    tenant, sent, django_capture_on_commit_callbacks
) -> None:
    worker = make_data_worker(tenant)
    job = make_analytics_job(tenant, config=HISTOGRAM)
    (contribution,) = start(job, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        analytics.worker_contributions_offer(worker_id=worker.id, tenant_id=worker.tenant_id)
    assert job.contributions.count() == 1
    assert [frame["contribution"] for _, frame in sent] == [contribution.id] * 2

    contribute(contribution, {"count": 1, "hist": [0, 1, 0, 0]}, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            analytics.worker_contributions_offer(worker_id=worker.id, tenant_id=worker.tenant_id)
            == 0
        )


def test_a_contribution_is_recorded_once_per_worker(
    tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_data_worker(tenant)
    make_data_worker(tenant)
    job = make_analytics_job(tenant, config=HISTOGRAM, policy={"min_workers": 2})
    first, _ = start(job, django_capture_on_commit_callbacks)
    result = kernel.local(rows([0.5, 1.5, 1.7]), job.config)

    assert contribute(first, result, django_capture_on_commit_callbacks) == "accepted"
    assert contribute(first, result, django_capture_on_commit_callbacks) == "accepted"
    first.refresh_from_db()
    assert first.status == "accepted" and first.result == result
    assert Worker.objects.get(pk=first.worker_id).updates_accepted == 1
    assert job.contributions.filter(status="accepted").count() == 1


def test_a_worker_may_not_send_another_workers_contribution(
    tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_data_worker(tenant)
    stranger = make_data_worker(make_tenant())
    (contribution,) = start(make_analytics_job(tenant), django_capture_on_commit_callbacks)
    with pytest.raises(analytics.ContributionError) as caught:
        analytics.contribution_record(
            worker_id=stranger.id, contribution_id=contribution.id, result={"count": 1}
        )
    assert caught.value.code == "unknown_assignment"


@pytest.mark.parametrize(
    "result",
    [
        {"count": 11, "hist": [11, 0, 0, 0]},  # more rows than max_rows
        {"count": 3, "hist": [1, 1, 0, 0]},  # bins do not sum to the count
        {"count": 2, "hist": [1, 1, 0]},  # a bin short
        {"count": 2},  # no histogram
    ],
)
def test_an_out_of_bounds_contribution_is_rejected_and_counted(
    result, tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_data_worker(tenant)
    job = make_analytics_job(tenant, config=HISTOGRAM, policy={"min_workers": 1})
    (contribution,) = start(job, django_capture_on_commit_callbacks)
    with pytest.raises(analytics.ContributionError) as caught:
        contribute(contribution, result, django_capture_on_commit_callbacks)

    assert caught.value.code == "bad_contribution"
    contribution.refresh_from_db()
    assert contribution.status == "rejected" and contribution.error
    assert Worker.objects.get(pk=contribution.worker_id).updates_rejected == 1
    job.refresh_from_db()
    assert job.status == "running" and job.result is None


def test_the_release_waits_for_min_workers_and_then_completes_the_job(
    tenant, sent, django_capture_on_commit_callbacks
) -> None:
    for _ in range(3):
        make_data_worker(tenant)
    job = make_analytics_job(tenant, config=HISTOGRAM, policy={"min_workers": 2})
    first, second, third = start(job, django_capture_on_commit_callbacks)
    shards = [rows([0.5, 1.5]), rows([3.5, 9.0, -1.0])]

    contribute(first, kernel.local(shards[0], job.config), django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert job.status == "running" and job.result is None

    contribute(second, kernel.local(shards[1], job.config), django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert job.status == "completed", job.error
    assert job.result["statistic"] == "histogram" and len(job.result["hist"]) == 4
    assert job.result["epsilon"] == 1.0 and job.result["noise_scale"] == {"hist": 10.0}
    assert job.result["contributions"] == 2 and job.result["rejected"] == 0
    assert Ledger.from_dict(job.privacy).spent.epsilon == 1.0
    third.refresh_from_db()
    assert third.status == "failed"  # not needed any more
    late = contribute(third, {"count": 0, "hist": [0, 0, 0, 0]}, django_capture_on_commit_callbacks)
    assert late == "late"


def test_an_exact_release_is_the_merged_statistic(
    tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_data_worker(tenant)
    make_data_worker(tenant)
    config = {"statistic": "sum", "lo": 0.0, "hi": 10.0}
    job = make_analytics_job(tenant, config=config)
    first, second = start(job, django_capture_on_commit_callbacks)
    contribute(
        first, kernel.local(rows([1.0, 2.0]), job.config), django_capture_on_commit_callbacks
    )
    contribute(
        second, kernel.local(rows([4.0, 20.0]), job.config), django_capture_on_commit_callbacks
    )

    job.refresh_from_db()
    assert job.status == "completed"
    assert job.result["sum"] == 17.0 and job.result["epsilon"] == 0.0
    assert analytics.privacy_summary(job) == {"epsilon_spent": 0.0, "epsilon_budget": 0.0}


def test_the_ledger_is_charged_exactly_once_even_when_the_release_runs_twice(
    tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_data_worker(tenant)
    make_data_worker(tenant)
    job = make_analytics_job(tenant, config=HISTOGRAM, policy={"epsilon_budget": 3.0})
    first, second = start(job, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):  # the task is run by hand below
        for contribution in (first, second):
            analytics.contribution_record(
                worker_id=contribution.worker_id,
                contribution_id=contribution.id,
                result={"count": 1, "hist": [1, 0, 0, 0]},
            )

    analytics.job_release(job_id=job.id, rng=np.random.default_rng(1))
    job.refresh_from_db()
    result = job.result
    analytics.job_release(job_id=job.id, rng=np.random.default_rng(2))
    analytics.analytics_sweep()

    job.refresh_from_db()
    assert job.status == "completed" and job.result == result
    ledger = Ledger.from_dict(job.privacy)
    assert len(ledger.charges) == 1 and ledger.spent.epsilon == 1.0
    assert analytics.privacy_summary(job) == {"epsilon_spent": 1.0, "epsilon_budget": 3.0}


def test_a_release_beyond_the_budget_is_refused_and_charges_nothing(
    tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_data_worker(tenant)
    make_data_worker(tenant)
    job = make_analytics_job(tenant, config=HISTOGRAM, policy={"epsilon_budget": 0.5})
    first, second = start(job, django_capture_on_commit_callbacks)
    for contribution in (first, second):
        result = {"count": 1, "hist": [0, 0, 1, 0]}
        contribute(contribution, result, django_capture_on_commit_callbacks)

    job.refresh_from_db()
    assert job.status == "failed"
    assert "Privacy budget exceeded" in job.error and "Nothing was charged" in job.error
    assert job.result is None
    assert Ledger.from_dict(job.privacy).charges == []


def test_a_job_without_enough_contributions_by_its_deadline_fails(
    tenant, sent, django_capture_on_commit_callbacks
) -> None:
    make_data_worker(tenant)
    job = make_analytics_job(tenant, config=HISTOGRAM, policy={"deadline_s": 5})
    start(job, django_capture_on_commit_callbacks)
    analytics.analytics_sweep()
    job.refresh_from_db()
    assert job.status == "running"

    Job.objects.filter(pk=job.pk).update(started_at=job.started_at.replace(year=2000))
    with django_capture_on_commit_callbacks(execute=True):
        analytics.analytics_sweep()
    job.refresh_from_db()
    assert job.status == "failed" and "0 of 2 contributions" in job.error
    assert Ledger.from_dict(job.privacy).charges == []

"""Round and assignment transitions on the real database."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from apps.jobs import services as job_services
from apps.jobs.models import Job
from apps.registry.models import ModelVersion
from apps.registry.services import model_weights
from apps.rounds import services
from apps.rounds.models import Assignment, Round
from apps.testing import make_job, make_tenant, make_worker, store_update

pytestmark = pytest.mark.django_db


def start(job: Job, capture) -> Round:
    with capture(execute=False):
        job_services.job_start(job_id=job.id)
    return job.rounds.get()


def select(fl_round: Round, capture) -> Round:
    with capture(execute=True):
        services.round_select(round_id=fl_round.id)
    fl_round.refresh_from_db()
    return fl_round


def report(assignment: Assignment, delta: np.ndarray, samples: int, capture=None, **kw) -> str:
    key, sha, size = store_update(delta)
    call = dict(
        worker_id=assignment.worker_id,
        assignment_id=assignment.id,
        update_key=key,
        sha256=sha,
        nbytes=size,
        num_samples=samples,
        metrics=kw.get("metrics", {}),
    )
    if capture is None:
        return services.assignment_report(**call)
    with capture(execute=False):
        return services.assignment_report(**call)


@pytest.fixture
def running(django_capture_on_commit_callbacks, sent):
    """A started job whose round 1 is offered to 3 connected workers."""
    tenant = make_tenant()
    workers = [make_worker(tenant)[0] for _ in range(3)]
    job = make_job(tenant, policy={"cohort_size": 3, "min_reports": 2, "max_rounds": 2})
    fl_round = select(
        start(job, django_capture_on_commit_callbacks), django_capture_on_commit_callbacks
    )
    return job, fl_round, workers


def test_it_waits_in_selecting_until_enough_workers_are_connected(
    django_capture_on_commit_callbacks, sent
) -> None:
    tenant = make_tenant()
    make_worker(tenant)
    make_worker(tenant, connected=False)
    job = make_job(tenant, policy={"cohort_size": 3, "min_reports": 2})
    fl_round = select(
        start(job, django_capture_on_commit_callbacks), django_capture_on_commit_callbacks
    )
    assert fl_round.status == Round.Status.SELECTING
    assert not Assignment.objects.exists() and sent == []


def test_it_offers_the_round_to_the_cohort_and_sends_each_an_assign_frame(running, sent) -> None:
    job, fl_round, workers = running
    assert fl_round.status == Round.Status.TRAINING and fl_round.selected == 3
    assert sorted(ch for ch, _ in sent) == sorted(w.channel_name for w in workers)
    frame = sent[0][1]
    assert frame["type"] == "assign" and frame["kernel"] == "softmax"
    assert frame["model"]["sha256"] == fl_round.base_model.sha256
    assert fl_round.deadline > timezone.now()


def test_it_never_selects_a_worker_of_another_tenant(django_capture_on_commit_callbacks, sent):
    tenant, other = make_tenant(), make_tenant()
    for _ in range(3):
        make_worker(other)
    job = make_job(tenant, policy={"cohort_size": 2, "min_reports": 1})
    fl_round = select(
        start(job, django_capture_on_commit_callbacks), django_capture_on_commit_callbacks
    )
    assert fl_round.status == Round.Status.SELECTING


def test_it_aggregates_at_quorum_a_sample_weighted_mean_of_the_updates(
    running, django_capture_on_commit_callbacks
) -> None:
    job, fl_round, _ = running
    assignments = list(fl_round.assignments.order_by("id"))
    size = fl_round.base_model.length
    deltas = [np.full(size, v, np.float32) for v in (1.0, 4.0, -2.0)]
    for assignment, delta, n in zip(assignments, deltas, (10, 30, 60), strict=True):
        report(assignment, delta, n, django_capture_on_commit_callbacks)
    fl_round.refresh_from_db()
    assert fl_round.status == Round.Status.AGGREGATING and fl_round.participants == 3
    with django_capture_on_commit_callbacks(execute=False):
        services.round_aggregate(round_id=fl_round.id)
    fl_round.refresh_from_db()
    model = ModelVersion.objects.get(fl_round=fl_round)
    expected = model_weights(fl_round.base_model) + (10 * 1 + 30 * 4 + 60 * -2) / 100
    np.testing.assert_allclose(model_weights(model), expected, rtol=1e-6, atol=1e-6)
    assert fl_round.status == Round.Status.CLOSED and model.version == 1
    assert "accuracy" in fl_round.metrics and fl_round.metrics["num_samples"] == 100
    assert all(a.aggregated for a in fl_round.assignments.all())


def test_aggregating_twice_registers_one_model_and_one_next_round(
    running, django_capture_on_commit_callbacks
) -> None:
    job, fl_round, _ = running
    size = fl_round.base_model.length
    for assignment in fl_round.assignments.all():
        report(assignment, np.ones(size, np.float32), 5, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        services.round_aggregate(round_id=fl_round.id)
        services.round_aggregate(round_id=fl_round.id)
    assert ModelVersion.objects.filter(job=job).count() == 2  # v0 and v1
    assert job.rounds.filter(number=2).count() == 1


def test_a_repeated_result_is_accepted_once_and_a_different_one_is_replayed(running) -> None:
    _, fl_round, _ = running
    assignment = fl_round.assignments.first()
    size = fl_round.base_model.length
    key, sha, nbytes = store_update(np.ones(size, np.float32))
    call = dict(
        worker_id=assignment.worker_id,
        assignment_id=assignment.id,
        update_key=key,
        sha256=sha,
        nbytes=nbytes,
        num_samples=3,
        metrics={},
    )
    assert services.assignment_report(**call) == "accepted"
    assert services.assignment_report(**call) == "accepted"
    with pytest.raises(services.AssignmentError) as err:
        services.assignment_report(**{**call, "sha256": "0" * 64})
    assert err.value.code == "replayed"
    fl_round.refresh_from_db()
    assert fl_round.participants == 1


def test_a_worker_cannot_report_on_another_workers_assignment(running) -> None:
    _, fl_round, workers = running
    mine, theirs = fl_round.assignments.order_by("id")[:2]
    with pytest.raises(services.AssignmentError) as err:
        services.assignment_accept(worker_id=mine.worker_id, assignment_id=theirs.id)
    assert err.value.code == "unknown_assignment"


def test_a_dropped_worker_does_not_fail_the_round_when_quorum_still_holds(
    running, django_capture_on_commit_callbacks
) -> None:
    _, fl_round, _ = running
    a, b, c = fl_round.assignments.order_by("id")
    size = fl_round.base_model.length
    with django_capture_on_commit_callbacks(execute=False):
        services.worker_drop_pending(worker_id=c.worker_id, reason="disconnected")
    report(a, np.ones(size, np.float32), 1, django_capture_on_commit_callbacks)
    report(b, np.ones(size, np.float32), 1, django_capture_on_commit_callbacks)
    fl_round.refresh_from_db()
    c.refresh_from_db()
    assert c.status == Assignment.Status.DROPPED and fl_round.dropped == 1
    assert fl_round.status == Round.Status.AGGREGATING


def test_a_rejected_update_is_counted_and_never_aggregated(
    running, django_capture_on_commit_callbacks
) -> None:
    _, fl_round, _ = running
    a, b, c = fl_round.assignments.order_by("id")
    size = fl_round.base_model.length
    with django_capture_on_commit_callbacks(execute=False):
        services.assignment_reject(worker_id=a.worker_id, assignment_id=a.id, code="not_finite")
    report(b, np.ones(size, np.float32), 1, django_capture_on_commit_callbacks)
    report(c, np.ones(size, np.float32), 1, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        services.round_aggregate(round_id=fl_round.id)
    a.refresh_from_db()
    fl_round.refresh_from_db()
    assert a.status == Assignment.Status.REJECTED and not a.aggregated
    assert fl_round.rejected == 1 and fl_round.bad_frames == 1
    assert fl_round.metrics["num_samples"] == 2


def test_at_the_deadline_with_quorum_it_aggregates_and_marks_the_rest_late(
    running, django_capture_on_commit_callbacks, sent
) -> None:
    _, fl_round, _ = running
    a, b, c = fl_round.assignments.order_by("id")
    size = fl_round.base_model.length
    report(a, np.ones(size, np.float32), 1, django_capture_on_commit_callbacks)
    report(b, np.ones(size, np.float32), 1, django_capture_on_commit_callbacks)
    Round.objects.filter(pk=fl_round.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.round_check_deadline(round_id=fl_round.id)
    c.refresh_from_db()
    fl_round.refresh_from_db()
    assert fl_round.status in (Round.Status.AGGREGATING, Round.Status.CLOSED)
    assert c.status == Assignment.Status.LATE and fl_round.late == 1
    assert (
        c.worker.channel_name,
        {"type": "cancel", "assignment": c.id, "reason": "round closed"},
    ) in sent


def test_a_deadline_without_quorum_retries_the_round_then_fails_the_job(
    django_capture_on_commit_callbacks, sent
) -> None:
    tenant = make_tenant()
    for _ in range(2):
        make_worker(tenant)
    job = make_job(tenant, policy={"cohort_size": 2, "min_reports": 2, "max_round_retries": 1})
    fl_round = start(job, django_capture_on_commit_callbacks)
    for attempt in (1, 2):
        fl_round = select(fl_round, django_capture_on_commit_callbacks)
        assert fl_round.attempt == attempt and fl_round.status == Round.Status.TRAINING
        Round.objects.filter(pk=fl_round.pk).update(deadline=timezone.now() - timedelta(seconds=1))
        with django_capture_on_commit_callbacks(execute=False):
            services.round_check_deadline(round_id=fl_round.id)
        fl_round.refresh_from_db()
        assert fl_round.status == Round.Status.FAILED
        fl_round = job.rounds.order_by("-attempt").first()
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "round 1 failed" in job.error
    assert job.rounds.count() == 2


def test_the_job_completes_after_its_last_round(running, django_capture_on_commit_callbacks):
    job, fl_round, _ = running
    for _ in (1, 2):
        fl_round = select(fl_round, django_capture_on_commit_callbacks)
        size = fl_round.base_model.length
        for assignment in fl_round.assignments.all():
            report(assignment, np.ones(size, np.float32), 1, django_capture_on_commit_callbacks)
        with django_capture_on_commit_callbacks(execute=False):
            services.round_aggregate(round_id=fl_round.id)
        fl_round = job.rounds.order_by("-number").first()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert list(job.model_versions.values_list("version", flat=True)) == [0, 1, 2]
    assert job.rounds.count() == 2


def test_a_paused_job_finishes_its_round_but_opens_no_next_one_until_resumed(
    running, django_capture_on_commit_callbacks
) -> None:
    job, fl_round, _ = running
    job_services.job_pause(job_id=job.id)
    size = fl_round.base_model.length
    for assignment in fl_round.assignments.all():
        report(assignment, np.ones(size, np.float32), 1, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        services.round_aggregate(round_id=fl_round.id)
    assert job.rounds.count() == 1
    with django_capture_on_commit_callbacks(execute=False):
        job_services.job_start(job_id=job.id)
    next_round = job.rounds.get(number=2)
    assert next_round.base_model.version == 1


def test_cancelling_a_job_stops_its_round_and_tells_the_workers(running, sent) -> None:
    job, fl_round, workers = running
    sent.clear()
    job_services.job_cancel(job_id=job.id)
    fl_round.refresh_from_db()
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED and fl_round.status == Round.Status.FAILED
    assert not fl_round.assignments.filter(status__in=Assignment.PENDING).exists()


def test_the_sweep_forgets_silent_workers_and_drops_their_work(
    running, django_capture_on_commit_callbacks
) -> None:
    _, fl_round, workers = running
    silent = workers[0]
    type(silent).objects.filter(pk=silent.pk).update(last_seen=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False):
        services.rounds_sweep()
    silent.refresh_from_db()
    assert silent.channel_name == ""
    assert fl_round.assignments.get(worker=silent).status == Assignment.Status.DROPPED


def test_an_update_lost_from_storage_is_left_out_and_its_assignment_rejected(
    running, django_capture_on_commit_callbacks
) -> None:
    _, fl_round, _ = running
    a, b, c = fl_round.assignments.order_by("id")
    size = fl_round.base_model.length
    for assignment, value in ((a, 1.0), (b, 3.0), (c, 100.0)):
        report(assignment, np.full(size, value, np.float32), 1, django_capture_on_commit_callbacks)
    c.refresh_from_db()
    default_storage.delete(c.update_key)
    with django_capture_on_commit_callbacks(execute=False):
        services.round_aggregate(round_id=fl_round.id)
    fl_round.refresh_from_db()
    c.refresh_from_db()
    model = ModelVersion.objects.get(fl_round=fl_round)
    np.testing.assert_allclose(model_weights(model), model_weights(fl_round.base_model) + 2.0)
    assert c.status == Assignment.Status.REJECTED and c.error_code == "storage"
    assert fl_round.participants == 2 and fl_round.rejected == 1

"""Work units of compute jobs on the real database: split, replicas, validation, reduce."""

from __future__ import annotations

import threading
from datetime import timedelta
from itertools import pairwise
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone

from apps.jobs import compute, validation
from apps.jobs import services as job_services
from apps.jobs.models import Job, UnitReplica, Worker, WorkUnit
from apps.testing import make_compute_job, make_compute_worker
from kernels.compute import get_compute_kernel
from kernels.primes import count_primes

pytestmark = pytest.mark.django_db


def start(job: Job, capture, execute: bool = False) -> None:
    with capture(execute=execute):
        job_services.job_start(job_id=job.id)


def dispatch(worker: Worker, capture) -> WorkUnit | None:
    """The unit of which the worker holds a replica after a dispatch, if any."""
    with capture(execute=True):
        compute.unit_dispatch(worker_id=worker.id)
    return WorkUnit.objects.filter(replicas__worker=worker, replicas__status="assigned").first()


def held(worker: Worker) -> UnitReplica | None:
    return UnitReplica.objects.filter(worker=worker, status="assigned").first()


def report(
    worker: Worker, unit: WorkUnit, capture, result: dict | None = None, speed: float = 1.0
) -> str:
    """The worker's result, computed (by its report) at ``speed`` cost units per second."""
    with capture(execute=True):
        return compute.unit_record_result(
            worker_id=worker.id,
            unit_id=unit.id,
            result=result or right_result(unit),
            seconds=unit.cost / speed,
        )


def single(tenant) -> Job:
    """A job whose units each need a single result."""
    return make_compute_job(tenant, policy={"unit_seconds": 2e-5, "replicas": 1})


def right_result(unit: WorkUnit) -> dict:
    kernel = get_compute_kernel(unit.job.kernel)
    return kernel.run({"start": unit.start, "stop": unit.stop}, unit.job.config)


def test_units_are_cut_one_at_a_time_as_workers_ask_and_replicas_come_first(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    job = make_compute_job(tenant)  # unit_seconds 2e-5: five units at the nominal speed
    start(job, django_capture_on_commit_callbacks)
    assert not job.units.exists() and not compute.space_is_cut(job)
    first, second, third = (make_compute_worker(tenant) for _ in range(3))
    unit = dispatch(first, django_capture_on_commit_callbacks)
    assert (unit.index, unit.start, unit.status) == (0, 1, "assigned")
    assert unit.cost == pytest.approx(2e-5, rel=0.01)
    assert dispatch(second, django_capture_on_commit_callbacks) == unit  # its second replica
    after = dispatch(third, django_capture_on_commit_callbacks)
    assert (after.index, after.start) == (1, unit.stop)
    for worker in (first, second):
        report(worker, unit, django_capture_on_commit_callbacks)
    while (nxt := dispatch(first, django_capture_on_commit_callbacks)) is not None:
        report(first, nxt, django_capture_on_commit_callbacks)
    units = list(job.units.order_by("index"))
    assert len(units) == 5 and compute.space_is_cut(job)
    assert units[0].start == 1 and units[-1].stop == 100_001
    assert all(a.stop == b.start for a, b in pairwise(units))


BIG = {"lo": 1, "hi": 10**11}  # about 430 cost units: hundreds of units of half a second


def unchecked_result(unit: WorkUnit) -> dict:
    """A result of the unit's shape, for a unit too big to compute in a test (none of these
    tests checks it against another replica)."""
    return {"start": unit.start, "stop": unit.stop, "count": 0}


def test_each_unit_is_sized_to_the_measured_speed_of_the_worker_it_is_cut_for(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    fast, slow, new = (make_compute_worker(tenant) for _ in range(3))
    job = make_compute_job(tenant, config=BIG, policy={"unit_seconds": 0.5, "replicas": 1})
    start(job, django_capture_on_commit_callbacks)
    # Each worker's first unit is cut at the nominal speed; its report measures its speed.
    for worker, speed in ((fast, 4.0), (slow, 0.5)):
        report(
            worker,
            unit := dispatch(worker, django_capture_on_commit_callbacks),
            django_capture_on_commit_callbacks,
            result=unchecked_result(unit),
            speed=speed,
        )
        worker.refresh_from_db()
        assert worker.compute_speeds == {"primes": pytest.approx(speed)}
    costs = {}
    for worker in (fast, slow, new):
        costs[worker] = dispatch(worker, django_capture_on_commit_callbacks).cost
    assert costs[fast] == pytest.approx(4 * 0.5, rel=0.01)
    assert costs[slow] == pytest.approx(0.5 * 0.5, rel=0.05)
    assert costs[new] == pytest.approx(0.5, rel=0.01)
    # Each replica's deadline gives its worker the policy's unit_deadline_s for its unit.
    for worker in (fast, slow, new):
        left = (held(worker).deadline - timezone.now()).total_seconds()
        assert 55 < left <= 60


def test_a_missed_deadline_halves_the_speed_and_a_bigger_unit_gets_a_longer_deadline(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    fast, slow = make_compute_worker(tenant), make_compute_worker(tenant)
    Worker.objects.filter(pk=fast.pk).update(compute_speeds={"primes": 8.0})
    Worker.objects.filter(pk=slow.pk).update(compute_speeds={"primes": 1.0})
    job = make_compute_job(tenant, config=BIG, policy={"unit_seconds": 0.5, "replicas": 1})
    start(job, django_capture_on_commit_callbacks)
    unit = dispatch(fast, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        compute.replica_requeue(replica_id=held(fast).id, reason="deadline")
    fast.refresh_from_db()
    assert fast.compute_speeds == {"primes": 4.0}
    assert dispatch(slow, django_capture_on_commit_callbacks) == unit  # requeued, not re-cut
    left = (held(slow).deadline - timezone.now()).total_seconds()
    times = unit.cost / 0.5  # the unit is this many of the slow worker's usual units
    assert times > 4 and times * 60 - 5 < left <= times * 60  # and gets as many deadlines


def test_a_job_is_reduced_only_once_its_whole_space_is_cut_and_validated(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant, policy={"unit_seconds": 2e-5, "replicas": 1})
    start(job, django_capture_on_commit_callbacks)
    report(
        worker,
        dispatch(worker, django_capture_on_commit_callbacks),
        django_capture_on_commit_callbacks,
    )
    compute.job_reduce(job_id=job.id)
    job.refresh_from_db()
    assert job.status == "running" and job.result is None  # the first unit is all there is yet
    assert set(job.units.values_list("status", flat=True)) == {"validated"}


def test_it_hands_an_idle_worker_one_unit_of_a_kernel_it_runs(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    other = make_compute_worker(tenant, kernels=["montecarlo"])
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    assert unit is not None and unit.index == 0 and held(worker).deadline > timezone.now()
    assert (unit.status, unit.in_play, unit.wanted) == ("assigned", 1, 2)
    assert dispatch(other, django_capture_on_commit_callbacks) is None
    channel, frame = sent[-1]
    assert channel == worker.channel_name and frame["type"] == "unit"
    assert frame["unit"] == unit.id and frame["spec"] == {"start": unit.start, "stop": unit.stop}
    # Asked again, the worker is sent the unit it holds, not a second one.
    assert dispatch(worker, django_capture_on_commit_callbacks) == unit
    assert sent[-1][1]["unit"] == unit.id
    assert UnitReplica.objects.filter(status="assigned").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_dispatchers_never_over_assign_a_unit(tenant, sent) -> None:
    workers = [make_compute_worker(tenant) for _ in range(8)]
    job = make_compute_job(tenant)
    with (
        mock.patch("apps.jobs.tasks.units_dispatch.delay"),
        mock.patch("apps.jobs.tasks.job_reduce.delay"),
    ):
        job_services.job_start(job_id=job.id)
    barrier = threading.Barrier(6)

    def dispatcher() -> None:
        try:
            barrier.wait()
            compute.units_dispatch(tenant_id=tenant.id)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    replicas = list(UnitReplica.objects.filter(unit__job=job, status="assigned"))
    assert len(replicas) == 8  # one to each worker, at most two (the policy's) per unit
    assert len({r.worker_id for r in replicas}) == 8 == len({w.id for w in workers})
    units = list(job.units.order_by("index"))
    for unit in units:
        assert unit.in_play == unit.replicas.count() <= 2
    assert units[0].start == 1 and all(a.stop == b.start for a, b in pairwise(units))
    holders = {(r.unit_id, r.worker.channel_name) for r in replicas}
    assert all((frame["unit"], channel) in holders for channel, frame in sent)  # resends too


def test_a_worker_with_slots_holds_that_many_units_and_each_result_frees_one(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    Worker.objects.filter(pk=worker.pk).update(capabilities={"kernels": ["primes"], "slots": 3})
    full = make_compute_worker(tenant)
    start(single(tenant), django_capture_on_commit_callbacks)
    assert worker.id in compute.idle_workers(tenant.id)
    with django_capture_on_commit_callbacks(execute=True):
        assert compute.unit_dispatch(worker_id=worker.id) == 3
    holding = list(UnitReplica.objects.filter(worker=worker, status="assigned"))
    assert len({r.unit_id for r in holding}) == 3 and len(sent) == 3
    assert worker.id not in compute.idle_workers(tenant.id)  # every slot taken
    # A result frees one slot: the answer brings one new unit, not the two still running.
    status, frames = compute.unit_result_and_next(
        worker_id=worker.id,
        unit_id=holding[0].unit_id,
        result=right_result(holding[0].unit),
        seconds=1.0,
    )
    assert status == "accepted" and len(frames) == 1
    assert frames[0]["unit"] not in {r.unit_id for r in holding}
    # After a reconnect the worker is sent all three it holds again, and nothing new.
    assert len(compute.next_unit_frames(worker_id=worker.id, resend=True)) == 3
    assert UnitReplica.objects.filter(worker=worker, status="assigned").count() == 3
    dispatch(full, django_capture_on_commit_callbacks)  # a one-slot worker still gets one
    assert UnitReplica.objects.filter(worker=full, status="assigned").count() == 1


def test_a_cutter_that_loses_the_race_for_an_index_cuts_the_next_one(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    first, second = make_compute_worker(tenant), make_compute_worker(tenant)
    job = make_compute_job(tenant, policy={"unit_seconds": 2e-5, "replicas": 1})
    start(job, django_capture_on_commit_callbacks)
    taken = dispatch(first, django_capture_on_commit_callbacks)
    real = compute._cut_to
    stale = iter([(1, 0)])  # what a cutter read before the other's unit 0 was committed

    def cut_to(*args):  # noqa: ANN002, ANN202
        return next(stale, None) or real(*args)

    with mock.patch("apps.jobs.compute._cut_to", side_effect=cut_to):
        replica = compute._cut(Worker.objects.get(pk=second.pk), job)
    assert (replica.unit.index, replica.unit.start) == (1, taken.stop)
    assert job.units.count() == 2


def test_a_unit_cut_while_its_job_stops_is_rolled_back(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False):
        job_services.job_cancel(job_id=job.id)
    # The dispatcher read the job as running just before the cancel committed.
    assert job.status == "running"
    assert compute._cut(Worker.objects.get(pk=worker.pk), job) is None
    assert not job.units.exists() and held(worker) is None


def test_slots_are_kept_only_as_a_whole_number_from_one_to_the_maximum() -> None:
    assert job_services.clean_capabilities({"slots": 4}) == {"slots": 4}
    assert job_services.clean_capabilities({"slots": job_services.MAX_SLOTS})["slots"] == 64
    for bad in (0, -1, job_services.MAX_SLOTS + 1, 2.0, True, "3", None):
        assert "slots" not in job_services.clean_capabilities({"slots": bad}), bad


def test_a_result_is_recorded_once_and_accepted_again_when_it_repeats(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    start(single(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    result = right_result(unit)
    for _ in range(2):
        status = compute.unit_record_result(
            worker_id=worker.id, unit_id=unit.id, result=result, seconds=0.25
        )
        assert status == "accepted"
    unit.refresh_from_db()
    assert unit.status == "validated" and unit.result == result and unit.seconds == 0.25
    assert unit.worker == worker and unit.replicas.get().status == "valid"


def test_a_result_for_a_unit_the_worker_does_not_hold_is_refused(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker, stranger = make_compute_worker(tenant), make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    for unit_id in (unit.id, unit.id + 1000):
        with pytest.raises(compute.UnitError) as caught:
            compute.unit_record_result(
                worker_id=stranger.id, unit_id=unit_id, result=right_result(unit), seconds=1.0
            )
        assert caught.value.code == "unknown_assignment"
    unit.refresh_from_db()
    assert unit.status == "assigned" and held(worker).unit == unit


def test_a_result_that_does_not_fit_the_unit_fails_its_replica_and_frees_the_unit(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    wrong = {**right_result(unit), "stop": unit.stop + 1}
    with pytest.raises(compute.UnitError) as caught:
        compute.unit_record_result(worker_id=worker.id, unit_id=unit.id, result=wrong, seconds=1)
    assert caught.value.code == "bad_result"
    unit.refresh_from_db()
    assert (unit.status, unit.attempts, unit.in_play, unit.error) == (
        "pending",
        1,
        0,
        "bad_result",
    )
    assert unit.replicas.get().status == "failed"


def test_the_units_of_a_worker_that_does_not_come_back_return_to_pending(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(worker, django_capture_on_commit_callbacks)
    assert compute.worker_units_release(worker_id=worker.id) == 0  # still connected
    job_services.worker_disconnect(worker_id=worker.id, channel_name=worker.channel_name)
    with django_capture_on_commit_callbacks(execute=False):
        assert compute.worker_units_release(worker_id=worker.id) == 1
    unit.refresh_from_db()
    assert (unit.status, unit.attempts, unit.in_play) == ("pending", 1, 0)
    assert unit.replicas.get().status == "timeout"


def test_the_sweep_requeues_an_overdue_unit_and_hands_it_out_again(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    slow = make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(slow, django_capture_on_commit_callbacks)
    UnitReplica.objects.filter(worker=slow).update(deadline=timezone.now() - timedelta(seconds=1))
    Worker.objects.filter(pk=slow.pk).update(channel_name="")  # it stays away
    fresh = make_compute_worker(tenant)
    with django_capture_on_commit_callbacks(execute=False):
        assert compute.units_sweep() == {"requeued": 1}
    unit.refresh_from_db()
    assert unit.attempts == 1 and unit.error == "deadline"
    assert unit.status == "assigned" and held(fresh).unit == unit  # the lowest index first


def test_a_unit_fails_its_job_after_the_policys_max_attempts(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    workers = [make_compute_worker(tenant) for _ in range(2)]
    job = make_compute_job(tenant, policy={"unit_seconds": 2e-5, "max_attempts": 2})
    start(job, django_capture_on_commit_callbacks)
    for attempt, worker in enumerate(workers, 1):
        unit = dispatch(worker, django_capture_on_commit_callbacks)
        assert unit.index == 0
        with django_capture_on_commit_callbacks(execute=False):
            compute.replica_requeue(replica_id=held(worker).id, reason="deadline")
        unit.refresh_from_db()
        assert unit.attempts == attempt
    job.refresh_from_db()
    assert unit.status == "failed" and job.status == "failed"
    assert "unit 0 failed after 2 attempts" in job.error
    assert dispatch(make_compute_worker(tenant), django_capture_on_commit_callbacks) is None


def test_the_last_validation_reduces_the_job_to_its_answer(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    workers = [make_compute_worker(tenant) for _ in range(2)]
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    while units := [dispatch(w, django_capture_on_commit_callbacks) for w in workers]:
        if units == [None, None]:
            break
        for worker, unit in zip(workers, units, strict=True):
            if unit is not None:
                report(worker, unit, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert job.status == "completed" and job.ended_at is not None
    assert set(job.units.values_list("status", flat=True)) == {"done"}
    assert (
        job.result
        == {"lo": 1, "hi": 100_000, "count": count_primes(1, 100_000)}
        == {
            "lo": 1,
            "hi": 100_000,
            "count": 9592,
        }
    )
    compute.job_reduce(job_id=job.id)  # a repeated task changes nothing
    assert Job.objects.get(pk=job.id).ended_at == job.ended_at


def test_a_paused_job_hands_out_no_units(tenant, django_capture_on_commit_callbacks, sent) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    job_services.job_pause(job_id=job.id)
    assert dispatch(worker, django_capture_on_commit_callbacks) is None
    start(job, django_capture_on_commit_callbacks, execute=True)  # resumed: handed out again
    assert UnitReplica.objects.filter(worker=worker, status="assigned").count() == 1


def test_cancelling_a_compute_job_takes_its_units_back_from_the_workers(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    assert dispatch(worker, django_capture_on_commit_callbacks) is not None
    with django_capture_on_commit_callbacks(execute=False):
        job_services.job_cancel(job_id=job.id)
    assert held(worker) is None and worker.id in compute.idle_workers(tenant.id)
    assert job.units.get(index=0).in_play == 0


def test_a_worker_holding_a_unit_is_not_selected_for_a_training_round(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    from apps.rounds.selectors import eligible_workers
    from apps.testing import make_job

    worker = make_compute_worker(tenant, kernels=["primes", "softmax"])
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    training = make_job(tenant)
    assert worker.id in [w.id for w in eligible_workers(training)]
    dispatch(worker, django_capture_on_commit_callbacks)
    assert worker.id not in [w.id for w in eligible_workers(training)]


def test_two_agreeing_replicas_validate_a_unit_and_credit_both_workers(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    first, second = make_compute_worker(tenant), make_compute_worker(tenant)
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(first, django_capture_on_commit_callbacks)
    assert dispatch(second, django_capture_on_commit_callbacks) == unit  # its second replica
    report(first, unit, django_capture_on_commit_callbacks)
    unit.refresh_from_db()
    assert (unit.status, unit.result) == ("returned", None)
    report(second, unit, django_capture_on_commit_callbacks)
    unit.refresh_from_db()
    assert (unit.status, unit.result, unit.worker) == ("validated", right_result(unit), first)
    assert set(unit.replicas.values_list("status", flat=True)) == {"valid"}
    for worker in (first, second):
        worker.refresh_from_db()
        assert worker.credit == pytest.approx(unit.cost)
        assert worker.trust == pytest.approx(validation.trust_after(0.5, agreed=True))


def test_a_wrong_answer_is_outvoted_by_two_honest_workers_and_earns_nothing(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    cheat, honest, other = (make_compute_worker(tenant) for _ in range(3))
    start(make_compute_job(tenant), django_capture_on_commit_callbacks)
    unit = dispatch(cheat, django_capture_on_commit_callbacks)
    assert dispatch(honest, django_capture_on_commit_callbacks) == unit
    wrong = {**right_result(unit), "count": right_result(unit)["count"] + 1}
    assert report(cheat, unit, django_capture_on_commit_callbacks, wrong) == "accepted"
    report(honest, unit, django_capture_on_commit_callbacks)
    unit.refresh_from_db()
    assert (unit.status, unit.wanted) == ("disputed", 3)
    assert held(other).unit == unit and unit.in_play == 3  # a third replica went out at once
    report(other, unit, django_capture_on_commit_callbacks)
    unit.refresh_from_db()
    assert unit.status == "validated" and unit.result == right_result(unit)
    verdicts = dict(unit.replicas.values_list("worker_id", "status"))
    assert verdicts == {cheat.id: "rejected", honest.id: "valid", other.id: "valid"}
    cheat.refresh_from_db(), honest.refresh_from_db()
    assert (cheat.credit, cheat.trust) == (0.0, pytest.approx(0.25))
    assert honest.credit == pytest.approx(unit.cost) and honest.trust > 0.5


def test_a_worker_never_gets_two_replicas_of_one_unit(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    job = make_compute_job(tenant)
    start(job, django_capture_on_commit_callbacks)
    seen = []
    while (unit := dispatch(worker, django_capture_on_commit_callbacks)) is not None:
        seen.append(unit.index)
        report(worker, unit, django_capture_on_commit_callbacks)
    assert seen == [0, 1, 2, 3, 4]  # each unit once, though each still wants a second result
    assert set(job.units.values_list("status", "in_play", "wanted")) == {("returned", 1, 2)}


def test_a_trusted_workers_units_are_spot_checked_at_the_configured_rate(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    worker = make_compute_worker(tenant)
    Worker.objects.filter(pk=worker.pk).update(trust=0.95)
    policy = {"unit_seconds": 2e-6, "spot_check_rate": 0.25}
    job = make_compute_job(tenant, policy=policy)
    start(job, django_capture_on_commit_callbacks)
    while (unit := dispatch(worker, django_capture_on_commit_callbacks)) is not None:
        report(worker, unit, django_capture_on_commit_callbacks)
    units = list(job.units.order_by("index"))
    checked = [u.index for u in units if validation.is_spot_checked(job.id, u.index, 0.25)]
    assert len(units) >= 40 and 0 < len(checked) < len(units) / 2
    assert [u.index for u in units if u.status == "returned"] == checked  # awaiting a replica
    assert all(u.status == "validated" and u.quorum == 1 for u in units if u.index not in checked)
    worker.refresh_from_db()
    assert worker.trust == 0.95  # results accepted alone were not checked
    assert worker.credit == pytest.approx(sum(u.cost for u in units if u.index not in checked))


def test_a_disputed_unit_gets_more_replicas_and_fails_after_max_replicas(
    tenant, django_capture_on_commit_callbacks, sent
) -> None:
    workers = [make_compute_worker(tenant) for _ in range(3)]
    policy = {"unit_seconds": 2e-5, "max_replicas": 3}
    job = make_compute_job(tenant, config={"lo": 1, "hi": 1000}, policy=policy)  # one unit
    start(job, django_capture_on_commit_callbacks)
    unit = dispatch(workers[0], django_capture_on_commit_callbacks)
    for offset, worker in enumerate(workers):
        assert dispatch(worker, django_capture_on_commit_callbacks) == unit
        answer = {**right_result(unit), "count": right_result(unit)["count"] + offset}
        report(worker, unit, django_capture_on_commit_callbacks, answer)
    unit.refresh_from_db(), job.refresh_from_db()
    assert (unit.status, unit.error, job.status) == ("failed", "disputed", "failed")
    assert "unit 0 results disagree after 3 replicas" in job.error
    assert set(unit.replicas.values_list("status", flat=True)) == {"returned"}
    assert all(w.credit == 0.0 for w in Worker.objects.filter(tenant=tenant))

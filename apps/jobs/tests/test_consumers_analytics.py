"""Analytics contributions through the worker gateway, over Channels' communicator."""

from __future__ import annotations

import numpy as np
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from apps.jobs import services as job_services
from apps.jobs.consent import CONSENT_VERSION
from apps.jobs.models import AnalyticsContribution, Job, Worker
from apps.jobs.tests.test_analytics import HISTOGRAM
from apps.testing import make_analytics_job, make_tenant, make_worker
from ccgsc.asgi import application
from ccgsc_client import wire
from kernels import analytics as kernel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
db = database_sync_to_async

ROWS = np.array([[0.5], [1.5], [1.7], [3.9], [9.0]])


async def connect(token: str, samples: int = 5) -> WebsocketCommunicator:
    """A worker that holds ``samples`` rows (none: it says nothing of data), welcomed."""
    comm = WebsocketCommunicator(application, "/ws/worker/")
    connected, _ = await comm.connect()
    assert connected
    capabilities = {"samples": samples, "n_features": 1} if samples else {}
    hello = {"type": "hello", "protocol": 1, "token": token, "capabilities": capabilities}
    await send(comm, hello)
    assert (await receive(comm))["type"] == "welcome"
    return comm


async def receive(comm: WebsocketCommunicator) -> dict:
    return wire.decode_text(await comm.receive_from(5))


async def send(comm: WebsocketCommunicator, msg: dict) -> None:
    await comm.send_to(text_data=wire.encode_text(msg))


async def start(job: Job) -> None:
    await db(job_services.job_start)(job_id=job.id)


async def asked(comm: WebsocketCommunicator, job: Job) -> dict:
    """The contribute frame the worker receives for ``job``."""
    frame = await receive(comm)
    assert frame["type"] == "contribute" and frame["job"] == job.id, frame
    assert frame["config"] == job.config
    return frame


async def contribute(comm: WebsocketCommunicator, contribution: int, result) -> dict:
    await send(comm, {"type": "contribution", "contribution": contribution, "result": result})
    return await receive(comm)


def ack(contribution: int, status: str = "accepted") -> dict:
    return {"type": "contribution_ack", "contribution": contribution, "status": status}


@db
def stored(contribution: int) -> AnalyticsContribution:
    return AnalyticsContribution.objects.get(pk=contribution)


@db
def worker_row(worker_id: int) -> Worker:
    return Worker.objects.get(pk=worker_id)


@db
def contributors(job: Job) -> list[int]:
    return sorted(job.contributions.values_list("worker_id", flat=True))


def enroll_browser(tenant, consent_version: str = CONSENT_VERSION, consented: bool = True):
    worker, token = job_services.worker_enroll(
        enrollment_key=tenant.enrollment_key, kind="browser", consent_version=consent_version
    )
    if not consented:
        Worker.objects.filter(pk=worker.pk).update(consented_at=None)
    return worker, token


async def test_a_connected_worker_is_asked_to_contribute_when_an_analytics_job_starts(tenant):
    worker, token = await db(make_worker)(tenant, connected=False)
    comm = await connect(token)
    job = await db(make_analytics_job)(tenant, config=HISTOGRAM)
    await start(job)
    frame = await asked(comm, job)
    assert (await stored(frame["contribution"])).worker_id == worker.id
    await comm.disconnect()


async def test_a_worker_connecting_to_a_running_job_is_asked_after_its_welcome(tenant):
    worker, token = await db(make_worker)(tenant, connected=False)
    job = await db(make_analytics_job)(tenant, config=HISTOGRAM)
    await start(job)
    assert await contributors(job) == []  # not connected when the job started
    comm = await connect(token)
    frame = await asked(comm, job)
    assert await contributors(job) == [worker.id]
    assert (await stored(frame["contribution"])).status == "requested"
    await comm.disconnect()


async def test_a_worker_without_data_is_not_asked(tenant):
    _, token = await db(make_worker)(tenant, connected=False)
    comm = await connect(token, samples=0)
    job = await db(make_analytics_job)(tenant, config=HISTOGRAM)
    await start(job)
    assert await contributors(job) == []
    assert await comm.receive_nothing(0.2)
    await comm.disconnect()


async def test_a_good_contribution_is_acked_and_stored_and_a_repeat_is_not_counted_twice(tenant):
    worker, token = await db(make_worker)(tenant, connected=False)
    comm = await connect(token)
    job = await db(make_analytics_job)(tenant, config=HISTOGRAM, policy={"min_workers": 2})
    await start(job)
    frame = await asked(comm, job)
    result = kernel.local(ROWS, frame["config"])
    assert result == {"count": 5, "hist": [1, 2, 0, 2]}

    assert await contribute(comm, frame["contribution"], result) == ack(frame["contribution"])
    assert await contribute(comm, frame["contribution"], result) == ack(frame["contribution"])
    contribution = await stored(frame["contribution"])
    assert contribution.status == "accepted" and contribution.result == result
    assert (await worker_row(worker.id)).updates_accepted == 1
    assert await db(job.contributions.filter(status="accepted").count)() == 1
    assert (await db(Job.objects.get)(pk=job.id)).status == "running"  # one of two workers
    await comm.disconnect()


async def test_the_last_contribution_needed_releases_the_statistic(tenant):
    _, token = await db(make_worker)(tenant, connected=False)
    comm = await connect(token)
    config = {**HISTOGRAM, "epsilon": None}
    job = await db(make_analytics_job)(tenant, config=config, policy={"min_workers": 1})
    await start(job)
    frame = await asked(comm, job)
    result = kernel.local(ROWS, frame["config"])
    assert await contribute(comm, frame["contribution"], result) == ack(frame["contribution"])
    job = await db(Job.objects.get)(pk=job.id)
    assert job.status == "completed"
    assert job.result["hist"] == [1, 2, 0, 2] and job.result["contributions"] == 1
    await comm.disconnect()


@pytest.mark.parametrize(
    "result",
    [
        {"count": 11, "hist": [11, 0, 0, 0]},  # more rows than max_rows
        {"count": 5, "hist": [1, 1, 1, 1]},  # bins that do not sum to the count
        {"count": 5, "hist": [1, 2, 0, 2], "rows": [[0.5]]},  # a key the statistic lacks
        {"count": 5, "sum": 9.0},  # a sum where a histogram is due
    ],
)
async def test_a_contribution_outside_the_bounds_is_refused_and_counted_on_the_worker(
    tenant, result
):
    worker, token = await db(make_worker)(tenant, connected=False)
    comm = await connect(token)
    job = await db(make_analytics_job)(tenant, config=HISTOGRAM)
    await start(job)
    frame = await asked(comm, job)
    error = await contribute(comm, frame["contribution"], result)
    assert error["type"] == "error" and error["code"] == "bad_contribution", error
    assert error["ref"] == {"contribution": frame["contribution"]}
    contribution = await stored(frame["contribution"])
    assert contribution.status == "rejected" and contribution.result is None
    worker = await worker_row(worker.id)
    assert worker.updates_rejected == 1 and worker.updates_accepted == 0
    # Rejected for good: a corrected result is not taken, and the worker is not asked again.
    good = kernel.local(ROWS, frame["config"])
    assert await contribute(comm, frame["contribution"], good) == ack(frame["contribution"], "late")
    assert (await stored(frame["contribution"])).status == "rejected"
    await comm.disconnect()
    comm = await connect(token)
    assert await comm.receive_nothing(0.2)
    await comm.disconnect()


async def test_a_contribution_id_of_another_worker_or_tenant_is_an_unknown_assignment(tenant):
    _, token = await db(make_worker)(tenant, connected=False)
    neighbour, neighbour_token = await db(make_worker)(tenant, connected=False)
    stranger_tenant = await db(make_tenant)()
    _, stranger_token = await db(make_worker)(stranger_tenant, connected=False)
    comm, theirs = await connect(token), await connect(neighbour_token)
    stranger = await connect(stranger_token)
    job = await db(make_analytics_job)(tenant, config=HISTOGRAM)
    await start(job)
    await asked(comm, job)
    frame = await asked(theirs, job)
    result = kernel.local(ROWS, frame["config"])

    for sender in (comm, stranger):
        error = await contribute(sender, frame["contribution"], result)
        assert error["type"] == "error" and error["code"] == "unknown_assignment", error
        assert error["ref"] == {"contribution": frame["contribution"]}
    assert (await stored(frame["contribution"])).status == "requested"
    assert (await worker_row(neighbour.id)).bad_frames == 0
    # The worker it was sent to may still answer it.
    assert await contribute(theirs, frame["contribution"], result) == ack(frame["contribution"])
    for sender in (comm, theirs, stranger):
        await sender.disconnect()


async def test_a_malformed_contribution_frame_gets_an_error_frame_with_a_code(tenant):
    worker, token = await db(make_worker)(tenant, connected=False)
    comm = await connect(token)
    job = await db(make_analytics_job)(tenant, config=HISTOGRAM)
    await start(job)
    frame = await asked(comm, job)
    request = frame["contribution"]
    for malformed in [
        {"type": "contribution", "contribution": request},  # no result
        {"type": "contribution", "result": {"count": 1, "hist": [1, 0, 0, 0]}},  # no id
        {"type": "contribution", "contribution": str(request), "result": {}},
        {"type": "contribution", "contribution": request, "result": [5, [1, 2, 0, 2]]},
        {"type": "contribution", "contribution": True, "result": {}},
    ]:
        await send(comm, malformed)
        error = await receive(comm)
        assert error["type"] == "error" and error["code"] == "bad_message", (malformed, error)
    await comm.send_to(text_data='{"type":"contribution","contribution":')
    assert (await receive(comm))["code"] == "bad_frame"
    assert (await stored(request)).status == "requested"  # nothing was recorded
    assert (await worker_row(worker.id)).bad_frames == 6
    await comm.disconnect()


async def test_a_browser_worker_is_asked_only_with_recorded_consent(tenant):
    consented, consented_token = await db(enroll_browser)(tenant)
    _, withdrawn_token = await db(enroll_browser)(tenant, consented=False)
    _, earlier_token = await db(enroll_browser)(tenant, consent_version="1")
    comms = [await connect(token) for token in (consented_token, withdrawn_token, earlier_token)]
    job = await db(make_analytics_job)(tenant, config=HISTOGRAM)
    await start(job)

    frame = await asked(comms[0], job)
    assert await contributors(job) == [consented.id]
    for comm in comms[1:]:
        assert await comm.receive_nothing(0.2)
    # Reconnecting does not change that.
    await comms[1].disconnect()
    comms[1] = await connect(withdrawn_token)
    assert await comms[1].receive_nothing(0.2)
    assert await contributors(job) == [consented.id]
    result = kernel.local(ROWS, frame["config"])
    assert await contribute(comms[0], frame["contribution"], result) == ack(frame["contribution"])
    for comm in comms:
        await comm.disconnect()

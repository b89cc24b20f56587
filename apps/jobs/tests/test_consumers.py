"""The worker gateway over Channels' communicator: auth, uploads, compute units, bad frames."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import numpy as np
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from apps.jobs import services as job_services
from apps.jobs.models import Job, Worker
from apps.rounds.models import Assignment, Round
from apps.testing import make_compute_job, make_job, make_tenant, make_worker
from ccgsc.asgi import application
from ccgsc_client import wire
from kernels.compute import get_compute_kernel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
db = database_sync_to_async
MLP = {"dataset": "digits", "hidden": 64}  # 4,810 parameters: several 1 KiB chunks


async def connect(
    token: str, kernels: tuple[str, ...] = ("softmax", "mlp")
) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, "/ws/worker/")
    connected, _ = await comm.connect()
    assert connected
    await comm.send_to(
        text_data=wire.encode_text(
            {
                "type": "hello",
                "protocol": wire.PROTOCOL_VERSION,
                "token": token,
                "capabilities": {"kernels": list(kernels)},
            }
        )
    )
    return comm


async def receive(comm: WebsocketCommunicator, timeout: float = 5) -> dict:
    return wire.decode_text(await comm.receive_from(timeout))


async def send(comm: WebsocketCommunicator, msg: dict) -> None:
    await comm.send_to(text_data=wire.encode_text(msg))


async def closed_with(comm: WebsocketCommunicator) -> int:
    output = await comm.receive_output(5)
    assert output["type"] == "websocket.close"
    return output["code"]


async def assigned(tenant, config=None, policy=None) -> tuple[WebsocketCommunicator, dict]:
    """A worker connected to a running one-worker job, holding its first assignment."""
    worker, token = await db(make_worker)(tenant, connected=False)
    job = await db(make_job)(
        tenant,
        kernel="mlp" if config else "softmax",
        config=config,
        policy={"cohort_size": 1, "min_reports": 1, **(policy or {})},
    )
    await db(job_services.job_start)(job_id=job.id)
    comm = await connect(token)
    assert (await receive(comm))["type"] == "welcome"
    assign = await receive(comm)
    assert assign["type"] == "assign"
    await send(comm, {"type": "accept", "assignment": assign["assignment"]})
    if assign["model"]["push"]:
        assign["weights"] = await receive_model(comm, assign)
    return comm, assign


async def fetch_model(comm: WebsocketCommunicator, assign: dict) -> np.ndarray:
    await send(
        comm,
        {
            "type": "model_request",
            "version": assign["model"]["version"],
            "assignment": assign["assignment"],
        },
    )
    return await receive_model(comm, assign)


async def receive_model(comm: WebsocketCommunicator, assign: dict) -> np.ndarray:
    parts: dict[int, bytes] = {}
    while True:
        header, payload = wire.decode_binary(await comm.receive_from(5))
        parts[header["seq"]] = bytes(payload)
        if len(parts) == header["total"]:
            break
    data = b"".join(parts[i] for i in range(len(parts)))
    assert wire.sha256_hex(data) == assign["model"]["sha256"]
    return wire.decode_tensor(data, "f32", assign["model"]["length"])


def begin(assign: dict, data: bytes, upload: str = "upload-1", chunk: int = 1024, **kw) -> dict:
    return {
        "type": "upload_begin",
        "assignment": assign["assignment"],
        "upload": upload,
        "size": len(data),
        "sha256": wire.sha256_hex(data),
        "chunk_size": chunk,
        "codec": "f32",
        "length": assign["model"]["length"],
        **kw,
    }


async def send_chunks(
    comm, upload: str, data: bytes, chunk: int = 1024, start: int = 0, stop: int | None = None
) -> None:
    for seq, part in list(wire.split_chunks(data, chunk))[start:stop]:
        header = {"type": "chunk", "upload": upload, "seq": seq, "crc32": wire.crc32(part)}
        await comm.send_to(bytes_data=wire.encode_binary(header, part))
        assert await receive(comm) == {"type": "chunk_ack", "upload": upload, "seq": seq}


def result(assign: dict, upload: str = "upload-1", samples: int = 10) -> dict:
    return {
        "type": "result",
        "assignment": assign["assignment"],
        "upload": upload,
        "num_samples": samples,
        "metrics": {"loss": 0.5, "accuracy": 0.75},
    }


def round_of(assign: dict) -> Round:
    return Assignment.objects.select_related("fl_round").get(pk=assign["assignment"]).fl_round


async def test_a_hello_with_a_valid_token_is_welcomed_and_marks_the_worker_connected(tenant):
    worker, token = await db(make_worker)(tenant, connected=False)
    comm = await connect(token)
    welcome = await receive(comm)
    assert welcome == {
        "type": "welcome",
        "worker": worker.pk,
        "protocol": 1,
        "heartbeat_s": welcome["heartbeat_s"],
    }
    await db(worker.refresh_from_db)()
    assert worker.channel_name and worker.capabilities["kernels"] == ["softmax", "mlp"]
    await comm.disconnect()
    await db(worker.refresh_from_db)()
    assert worker.channel_name == ""


async def test_an_unknown_token_closes_the_socket_with_4401(tenant):
    comm = await connect("not-a-token")
    assert await closed_with(comm) == wire.CLOSE_BAD_TOKEN


async def test_an_expired_token_closes_the_socket_with_4401(tenant):
    worker, token = await db(make_worker)(tenant, connected=False)
    await db(Worker.objects.filter(pk=worker.pk).update)(
        token_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert await closed_with(await connect(token)) == wire.CLOSE_BAD_TOKEN


async def test_a_disabled_worker_is_closed_with_4403(tenant):
    worker, token = await db(make_worker)(tenant, connected=False)
    await db(Worker.objects.filter(pk=worker.pk).update)(is_active=False)
    assert await closed_with(await connect(token)) == wire.CLOSE_FORBIDDEN


async def test_a_first_frame_that_is_not_a_hello_closes_with_4400(tenant):
    comm = WebsocketCommunicator(application, "/ws/worker/")
    await comm.connect()
    await send(comm, {"type": "heartbeat"})
    assert await closed_with(comm) == wire.CLOSE_BAD_PROTOCOL


async def test_a_silent_connection_is_closed_after_the_hello_timeout(tenant, settings):
    settings.CCGSC_HELLO_TIMEOUT_S = 0.2
    comm = WebsocketCommunicator(application, "/ws/worker/")
    await comm.connect()
    assert await closed_with(comm) == wire.CLOSE_HELLO_TIMEOUT


async def test_a_worker_trains_uploads_in_chunks_and_its_update_is_aggregated(tenant, settings):
    settings.CCGSC_MODEL_PUSH_BYTES = 0  # the model must be asked for
    comm, assign = await assigned(tenant, config=MLP)
    assert not assign["model"]["push"]
    weights = await fetch_model(comm, assign)
    update = np.full_like(weights, 0.01)
    data = wire.encode_tensor(update)
    await send(comm, begin(assign, data))
    assert await receive(comm) == {"type": "upload_ready", "upload": "upload-1", "next_seq": 0}
    await send_chunks(comm, "upload-1", data)
    await send(comm, result(assign))
    assert await receive(comm) == {
        "type": "result_ack",
        "assignment": assign["assignment"],
        "status": "accepted",
    }
    fl_round = await db(round_of)(assign)
    assert fl_round.status == Round.Status.CLOSED  # eager Celery aggregated it
    assert fl_round.participants == 1 and fl_round.bytes_up == len(data)
    assert fl_round.bytes_down == 4 * weights.size
    await comm.disconnect()


async def test_a_disk_staged_upload_resumes_after_a_reconnect_from_the_last_whole_chunk(
    tenant, settings
):
    settings.CCGSC_UPLOAD_MEMORY_BYTES = 0
    comm, assign = await assigned(tenant, config=MLP)
    data = wire.encode_tensor(np.full(assign["model"]["length"], 0.5, np.float32))
    await send(comm, begin(assign, data))
    await receive(comm)
    await send_chunks(comm, "upload-1", data, stop=5)
    await comm.disconnect()
    token_worker = await db(Assignment.objects.select_related("worker").get)(
        pk=assign["assignment"]
    )
    raw = await db(_new_token)(token_worker.worker)
    again = await rejoin(raw, assign)
    await send(again, begin(assign, data))
    assert await receive(again) == {"type": "upload_ready", "upload": "upload-1", "next_seq": 5}
    await send_chunks(again, "upload-1", data, start=5)
    await send(again, result(assign))
    assert (await receive(again))["status"] == "accepted"
    await again.disconnect()


async def test_a_memory_staged_upload_starts_again_after_a_reconnect(tenant, settings):
    settings.CCGSC_UPLOAD_MEMORY_BYTES = 1 << 20
    comm, assign = await assigned(tenant, config=MLP)
    data = wire.encode_tensor(np.full(assign["model"]["length"], 0.5, np.float32))
    await send(comm, begin(assign, data))
    await receive(comm)
    await send_chunks(comm, "upload-1", data, stop=5)
    await comm.disconnect()
    worker = (
        await db(Assignment.objects.select_related("worker").get)(pk=assign["assignment"])
    ).worker
    again = await rejoin(await db(_new_token)(worker), assign)
    await send(again, begin(assign, data))
    assert await receive(again) == {"type": "upload_ready", "upload": "upload-1", "next_seq": 0}
    await send_chunks(again, "upload-1", data)
    await send(again, result(assign))
    assert (await receive(again))["status"] == "accepted"
    await again.disconnect()


async def test_a_small_model_is_pushed_and_a_small_update_goes_in_one_frame(tenant):
    comm, assign = await assigned(tenant, config=MLP)
    assert assign["model"]["push"] and assign["weights"].size == assign["model"]["length"]
    data = wire.encode_tensor(np.full_like(assign["weights"], 0.02))
    header = {
        "type": "update",
        "assignment": assign["assignment"],
        "upload": "single-1",
        "sha256": wire.sha256_hex(data),
        "codec": "f32",
        "length": assign["model"]["length"],
        "num_samples": 7,
        "metrics": {"loss": 1.0},
    }
    await comm.send_to(bytes_data=wire.encode_binary(header, data))
    assert await receive(comm) == {
        "type": "result_ack",
        "assignment": assign["assignment"],
        "status": "accepted",
    }
    fl_round = await db(round_of)(assign)
    assert fl_round.status == Round.Status.CLOSED and fl_round.participants == 1
    assert fl_round.bytes_down == len(data) and fl_round.metrics["num_samples"] == 7
    await comm.disconnect()


async def test_a_one_frame_update_with_a_bad_hash_is_rejected(tenant):
    comm, assign = await assigned(tenant, config=MLP)
    data = wire.encode_tensor(np.zeros(assign["model"]["length"], np.float32))
    header = {
        "type": "update",
        "assignment": assign["assignment"],
        "upload": "single-2",
        "sha256": "0" * 64,
        "codec": "f32",
        "length": assign["model"]["length"],
        "num_samples": 7,
    }
    await comm.send_to(bytes_data=wire.encode_binary(header, data))
    await expect_error(comm, "bad_checksum")
    fl_round = await db(round_of)(assign)
    assert fl_round.rejected == 1 and fl_round.participants == 0
    await comm.disconnect()


async def rejoin(token: str, assign: dict) -> WebsocketCommunicator:
    """Reconnect; the server offers the assignment the worker still holds again."""
    comm = await connect(token)
    assert (await receive(comm))["type"] == "welcome"
    again = await receive(comm)
    assert again["type"] == "assign" and again["assignment"] == assign["assignment"]
    if again["model"]["push"]:
        await receive_model(comm, again)
    return comm


def _new_token(worker: Worker) -> str:
    """Issue a fresh token for the same worker (the test lost the raw one)."""
    raw = f"token-{worker.pk}-again"
    Worker.objects.filter(pk=worker.pk).update(token_hash=job_services.hash_token(raw))
    return raw


async def expect_error(comm, code: str) -> dict:
    msg = await receive(comm)
    assert msg["type"] == "error" and msg["code"] == code, msg
    return msg


async def test_malformed_frames_get_error_frames_with_codes_and_are_counted(tenant, settings):
    comm, assign = await assigned(tenant, config=MLP)
    await comm.send_to(text_data="{not json")
    await expect_error(comm, "bad_frame")
    await send(comm, {"type": "teleport", "assignment": assign["assignment"]})
    await expect_error(comm, "unknown_type")
    await send(comm, {"type": "accept"})
    await expect_error(comm, "bad_message")
    await comm.send_to(text_data="x" * (settings.CCGSC_MAX_TEXT_FRAME + 1))
    await expect_error(comm, "too_large")
    await comm.send_to(bytes_data=b"garbage")
    await expect_error(comm, "bad_frame")
    data = wire.encode_tensor(np.zeros(assign["model"]["length"], np.float32))
    await send(comm, begin(assign, data))
    await receive(comm)
    bad = {"type": "chunk", "upload": "upload-1", "seq": 0, "crc32": 1}
    await comm.send_to(bytes_data=wire.encode_binary(bad, data[:1024]))
    await expect_error(comm, "bad_checksum")
    skip = {"type": "chunk", "upload": "upload-1", "seq": 3, "crc32": wire.crc32(data[:1024])}
    await comm.send_to(bytes_data=wire.encode_binary(skip, data[:1024]))
    await expect_error(comm, "out_of_order")
    await send(comm, result(assign))
    await expect_error(comm, "incomplete")
    fl_round = await db(round_of)(assign)
    assert fl_round.bad_frames == 8 and fl_round.participants == 0
    assert fl_round.status == Round.Status.TRAINING  # nothing was lost or accepted
    await comm.disconnect()


@pytest.mark.parametrize(
    "mutate,code",
    [
        (lambda a: a.__setitem__(7, np.nan), "not_finite"),
        (lambda a: a.__setitem__(0, np.inf), "not_finite"),
        (lambda a: a.__iadd__(100.0), "norm_too_large"),
    ],
)
async def test_a_bad_update_is_rejected_counted_and_never_aggregated(tenant, mutate, code):
    comm, assign = await assigned(tenant, config=MLP, policy={"max_update_norm": 50.0})
    update = np.zeros(assign["model"]["length"], np.float32)
    mutate(update)
    data = wire.encode_tensor(update)
    await send(comm, begin(assign, data))
    await receive(comm)
    await send_chunks(comm, "upload-1", data)
    await send(comm, result(assign))
    await expect_error(comm, code)
    fl_round = await db(round_of)(assign)
    status = await db(lambda: Assignment.objects.get(pk=assign["assignment"]).status)()
    assert status == Assignment.Status.REJECTED and fl_round.rejected == 1
    assert fl_round.participants == 0
    await comm.disconnect()


async def test_an_upload_of_the_wrong_length_is_rejected_at_begin(tenant):
    comm, assign = await assigned(tenant)
    data = wire.encode_tensor(np.zeros(assign["model"]["length"] + 1, np.float32))
    await send(comm, begin(assign, data, length=assign["model"]["length"] + 1))
    await expect_error(comm, "wrong_shape")
    await comm.disconnect()


async def test_a_second_result_for_a_reported_assignment_is_a_replay(tenant):
    comm, assign = await assigned(tenant, policy={"max_rounds": 2})
    data = wire.encode_tensor(np.zeros(assign["model"]["length"], np.float32))
    await send(comm, begin(assign, data, chunk=1024))
    await receive(comm)
    await send_chunks(comm, "upload-1", data)
    await send(comm, result(assign))
    assert (await receive(comm))["type"] == "result_ack"
    second = await receive(comm)
    assert second["type"] == "assign" and second["round"] == 2
    await receive_model(comm, second)  # pushed after the assign frame
    other = wire.encode_tensor(np.ones(assign["model"]["length"], np.float32))
    await send(comm, begin(assign, other, upload="upload-2"))
    error = await expect_error(comm, "replayed")
    assert error["ref"] == {"assignment": assign["assignment"], "upload": "upload-2"}
    await comm.disconnect()


async def test_resending_an_acknowledged_update_is_accepted_and_counted_once(tenant):
    comm, assign = await assigned(tenant, policy={"max_rounds": 2})
    data = wire.encode_tensor(np.full(assign["model"]["length"], 0.1, np.float32))
    header = {
        "type": "update",
        "assignment": assign["assignment"],
        "upload": "first-upload",
        "sha256": wire.sha256_hex(data),
        "codec": "f32",
        "length": assign["model"]["length"],
        "num_samples": 3,
    }
    await comm.send_to(bytes_data=wire.encode_binary(header, data))
    ack = await receive(comm)
    assert ack["type"] == "result_ack", ack
    await receive_model(comm, await receive(comm))  # round 2 is offered
    # The acknowledgement was lost, as far as the worker knows: it sends the same bytes again.
    await comm.send_to(bytes_data=wire.encode_binary({**header, "upload": "again-upload"}, data))
    assert await receive(comm) == {
        "type": "result_ack",
        "assignment": assign["assignment"],
        "status": "accepted",
    }
    fl_round = await db(round_of)(assign)
    assert fl_round.participants == 1 and fl_round.metrics["num_samples"] == 3
    await comm.disconnect()


async def test_a_worker_cannot_fetch_another_tenants_model(tenant):
    comm, assign = await assigned(tenant)
    other = await db(make_tenant)()
    _, token = await db(make_worker)(other, connected=False)
    stranger = await connect(token)
    await receive(stranger)
    await send(stranger, {"type": "model_request", "version": assign["model"]["version"]})
    await expect_error(stranger, "unknown_model")
    await stranger.disconnect()
    await comm.disconnect()


async def test_a_compute_worker_runs_every_unit_and_the_job_completes_with_the_count(tenant):
    worker, token = await db(make_worker)(tenant, connected=False)
    job = await db(make_compute_job)(tenant, policy={"unit_seconds": 2e-5, "replicas": 1})
    await db(job_services.job_start)(job_id=job.id)
    comm = await connect(token, kernels=("primes",))
    assert (await receive(comm))["type"] == "welcome"
    kernel = get_compute_kernel("primes")
    units = []
    for _ in range(5):
        unit = await receive(comm)
        assert unit["type"] == "unit" and unit["job"] == job.id and unit["kernel"] == "primes"
        units.append(unit["spec"])
        result = kernel.run(unit["spec"], unit["config"])
        # Computed at the nominal speed, so the next unit is cut to the same cost.
        seconds = kernel.cost(unit["config"], result["start"], result["stop"])
        message = {"type": "unit_result", "unit": unit["unit"], "result": result}
        await send(comm, {**message, "seconds": seconds})
        assert await receive(comm) == {
            "type": "unit_ack",
            "unit": unit["unit"],
            "status": "accepted",
        }
    assert units[0]["start"] == 1 and units[-1]["stop"] == 100_001
    assert all(a["stop"] == b["start"] for a, b in pairwise(units))
    assert await comm.receive_nothing(0.2)
    job = await db(Job.objects.get)(pk=job.id)
    assert job.status == "completed" and job.result["count"] == 9592
    await comm.disconnect()


async def test_a_result_for_a_unit_the_worker_does_not_hold_gets_an_error_frame(tenant):
    _, token = await db(make_worker)(tenant, connected=False)
    job = await db(make_compute_job)(tenant)
    await db(job_services.job_start)(job_id=job.id)
    comm = await connect(token, kernels=("primes",))
    assert (await receive(comm))["type"] == "welcome"
    unit = await receive(comm)
    result = {"start": 1, "stop": 2, "count": 0}
    await send(
        comm, {"type": "unit_result", "unit": unit["unit"] + 1, "result": result, "seconds": 1}
    )
    error = await receive(comm)
    assert error["type"] == "error" and error["code"] == "unknown_assignment"
    assert error["ref"] == {"unit": unit["unit"] + 1}
    await comm.disconnect()

"""The worker gateway: a thin WebSocket consumer over the services (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import logging
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.jobs import analytics, compute
from apps.jobs import services as job_services
from apps.jobs import tasks as job_tasks
from apps.jobs.batching import batcher
from apps.jobs.models import Worker
from apps.registry.models import ModelVersion
from apps.registry.services import model_bytes
from apps.rounds import services as round_services
from apps.rounds import tasks as round_tasks
from apps.rounds import uploads
from ccgsc_client import wire

log = logging.getLogger(__name__)

CLIENT_TYPES = {
    "heartbeat",
    "accept",
    "decline",
    "model_request",
    "upload_begin",
    "result",
    "unit_result",
    "contribution",
}
_CLOSE_FOR = {
    "bad_token": wire.CLOSE_BAD_TOKEN,
    "expired": wire.CLOSE_BAD_TOKEN,
    "disabled": wire.CLOSE_FORBIDDEN,
}
TOUCH_EVERY_S = 5.0
MODEL_CHUNK = 1024 * 1024


class WorkerConsumer(AsyncWebsocketConsumer):
    """One connected worker: authenticate on hello, then relay frames to services."""

    async def connect(self) -> None:
        self.worker_id: int | None = None
        self.tenant_id: int | None = None
        self.uploads: dict[str, uploads.Upload] = {}
        self.contexts: dict[int, dict] = {}  # assignment id -> upload context, from assign frames
        self.bytes_down: dict[int, int] = {}  # assignment id -> model bytes sent for it
        self.touched = 0.0
        await self.accept()
        self.hello_timer = asyncio.get_running_loop().call_later(
            settings.CCGSC_HELLO_TIMEOUT_S, self._hello_timeout
        )
        _ensure_embedded_ticker()

    def _hello_timeout(self) -> None:
        if self.worker_id is None:
            asyncio.ensure_future(self.close(code=wire.CLOSE_HELLO_TIMEOUT))

    async def disconnect(self, code: int) -> None:
        self.hello_timer.cancel()
        if self.worker_id is None:
            return
        offline = await database_sync_to_async(job_services.worker_disconnect)(
            worker_id=self.worker_id, channel_name=self.channel_name
        )
        if offline:
            await _later(settings.CCGSC_RECONNECT_GRACE_S, round_tasks.worker_gone, self.worker_id)
            await _later(
                settings.CCGSC_RECONNECT_GRACE_S, job_tasks.worker_units_release, self.worker_id
            )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        ref_assignment = None
        try:
            if text_data is not None:
                if len(text_data) > settings.CCGSC_MAX_TEXT_FRAME:
                    raise wire.WireError("too_large", "text frames are limited in size")
                msg = wire.decode_text(text_data)
                ref_assignment = msg.get("assignment")
                await self._dispatch(msg)
            else:
                await self._binary(bytes_data or b"")
        except uploads.UpdateRejected as exc:
            await self._send_msg(exc.frame())
        except wire.WireError as exc:
            await self._error(exc.code, exc.message, exc.ref, ref_assignment)
        except round_services.AssignmentError as exc:
            assignment = exc.assignment_id or ref_assignment
            await self._error(exc.code, exc.message, {"assignment": assignment}, assignment)
        except compute.UnitError as exc:
            await self._error(exc.code, exc.message, {"unit": exc.unit_id}, None)
        except analytics.ContributionError as exc:
            ref = {"contribution": exc.contribution_id}
            await self._error(exc.code, exc.message, ref, None)

    async def _dispatch(self, msg: dict) -> None:
        if self.worker_id is None:
            await self._hello(msg)
        elif msg["type"] in CLIENT_TYPES:
            await getattr(self, f"on_{msg['type']}")(msg)
        else:
            raise wire.WireError("unknown_type", f"{msg['type']!r} is not sent by workers")

    async def _binary(self, data: bytes) -> None:
        if self.worker_id is None:
            await self.close(code=wire.CLOSE_BAD_PROTOCOL)
            return
        if len(data) > settings.CCGSC_CHUNK_BYTES + wire.MAX_HEADER_BYTES + 8:
            raise wire.WireError("too_large", "binary frames hold at most one chunk")
        header, payload = wire.decode_binary(data)
        if header["type"] == "chunk":
            await self._chunk(header, payload)
        elif header["type"] == "update":
            await self._update(header, payload)
        else:
            raise wire.WireError("unknown_type", f"{header['type']!r} is not sent by workers")

    async def _chunk(self, header: dict, payload: memoryview) -> None:
        upload = self.uploads.get(header["upload"])
        if upload is None:
            raise wire.WireError("bad_message", "send upload_begin before its chunks", header)
        await _run(
            upload,
            uploads.upload_chunk,
            upload,
            seq=header["seq"],
            crc=header["crc32"],
            payload=payload,
        )
        await self._send_msg(
            {"type": "chunk_ack", "upload": upload.upload_id, "seq": header["seq"]}
        )

    async def _update(self, header: dict, payload: memoryview) -> None:
        """A whole update in one frame: its upload is opened, filled and finished at once."""
        if len(payload) > settings.CCGSC_CHUNK_BYTES:
            ref = {"assignment": header["assignment"], "upload": header["upload"]}
            raise wire.WireError("too_large", "larger updates go in chunks", ref)
        msg = {**header, "size": len(payload), "chunk_size": settings.CCGSC_CHUNK_BYTES}
        upload = await self._open_upload(msg, payload=bytes(payload))
        await self._finish(upload, header)

    async def _hello(self, msg: dict) -> None:
        if msg["type"] != "hello" or msg["protocol"] != wire.PROTOCOL_VERSION:
            await self.close(code=wire.CLOSE_BAD_PROTOCOL)
            return
        worker, why, previous, held, units = await database_sync_to_async(_greet)(
            msg["token"], self.channel_name, msg.get("capabilities", {})
        )
        if worker is None:
            await self.close(code=_CLOSE_FOR[why])
            return
        self.hello_timer.cancel()
        self.worker_id, self.tenant_id = worker.pk, worker.tenant_id
        if previous:
            await self.channel_layer.send(
                previous, {"type": "worker.close", "code": wire.CLOSE_REPLACED}
            )
        await self._send_msg(
            {
                "type": "welcome",
                "worker": worker.pk,
                "protocol": wire.PROTOCOL_VERSION,
                "heartbeat_s": settings.CCGSC_HEARTBEAT_S,
            }
        )
        for event in held:
            await self.worker_send(event)
        for unit in units:
            await self._send_msg(unit)

    async def on_heartbeat(self, msg: dict) -> None:
        now = time.monotonic()
        if now - self.touched >= TOUCH_EVERY_S:
            self.touched = now
            await database_sync_to_async(job_services.worker_touch)(
                worker_id=self.worker_id, channel_name=self.channel_name
            )
        await self._send_msg({"type": "pong"})

    async def on_accept(self, msg: dict) -> None:
        if msg["assignment"] in self.contexts:  # known to be this worker's: write in a batch
            await batcher(round_services.assignments_accept).submit(
                (self.worker_id, msg["assignment"])
            )
            return
        await database_sync_to_async(round_services.assignment_accept)(
            worker_id=self.worker_id, assignment_id=msg["assignment"]
        )

    async def on_decline(self, msg: dict) -> None:
        self.contexts.pop(msg["assignment"], None)
        await database_sync_to_async(round_services.assignment_drop)(
            worker_id=self.worker_id, assignment_id=msg["assignment"], reason="declined"
        )

    async def on_unit_result(self, msg: dict) -> None:
        status, units = await database_sync_to_async(compute.unit_result_and_next)(
            worker_id=self.worker_id,
            unit_id=msg["unit"],
            result=msg["result"],
            seconds=msg["seconds"],
        )
        await self._send_msg({"type": "unit_ack", "unit": msg["unit"], "status": status})
        for unit in units:
            await self._send_msg(unit)

    async def on_contribution(self, msg: dict) -> None:
        status = await database_sync_to_async(analytics.contribution_record)(
            worker_id=self.worker_id, contribution_id=msg["contribution"], result=msg["result"]
        )
        await self._send_msg(
            {"type": "contribution_ack", "contribution": msg["contribution"], "status": status}
        )

    async def on_model_request(self, msg: dict) -> None:
        await self._send_model(msg["version"], msg.get("assignment"))

    async def _send_model(self, version: int, assignment: int | None) -> None:
        data = await _model_bytes(self.tenant_id, version)
        if data is None:
            raise wire.WireError("unknown_model", "no such model version", {"version": version})
        total = wire.chunk_count(len(data), MODEL_CHUNK)
        for seq, chunk in wire.split_chunks(data, MODEL_CHUNK):
            header = {"type": "model", "version": version, "seq": seq, "total": total}
            await self.send(bytes_data=wire.encode_binary(header, chunk))
        if assignment in self.contexts:
            self.bytes_down[assignment] = self.bytes_down.get(assignment, 0) + len(data)
        elif assignment is not None:
            await database_sync_to_async(round_services.round_add_bytes_down)(
                worker_id=self.worker_id, assignment_id=assignment, nbytes=len(data)
            )

    async def on_upload_begin(self, msg: dict) -> None:
        upload = await self._open_upload(msg)
        if upload.path is not None:
            await sync_to_async(uploads.upload_resume, thread_sensitive=False)(upload)
        self.uploads[upload.upload_id] = upload
        await self._send_msg(
            {"type": "upload_ready", "upload": upload.upload_id, "next_seq": upload.next_seq}
        )

    async def _open_upload(self, msg: dict, payload: bytes | None = None) -> uploads.Upload:
        assignment = msg["assignment"]
        if assignment not in self.contexts:  # not relayed here: ask the database
            try:
                self.contexts[assignment] = await database_sync_to_async(uploads.upload_context)(
                    worker_id=self.worker_id, assignment_id=assignment, sha256=msg["sha256"]
                )
            except round_services.AssignmentError as exc:
                ref = {"assignment": assignment, "upload": msg["upload"]}
                raise wire.WireError(exc.code, exc.message, ref) from None
        try:
            return uploads.upload_open(
                worker_id=self.worker_id,
                msg=msg,
                context=self.contexts[assignment],
                payload=payload,
            )
        except uploads.BadUpdate as bad:
            await self._reject(assignment, msg["upload"], bad)
            raise  # not reached: _reject raises

    async def on_result(self, msg: dict) -> None:
        upload = self.uploads.pop(msg["upload"], None)
        if upload is None or upload.assignment_id != msg["assignment"]:
            raise wire.WireError("bad_message", "no upload with that id for this assignment")
        try:
            await self._finish(upload, msg)
        except wire.WireError as exc:
            if exc.code in ("incomplete", "bad_message"):
                self.uploads[upload.upload_id] = upload  # the worker may still complete it
            raise

    async def _finish(self, upload: uploads.Upload, msg: dict) -> None:
        """Verify, store and report a complete upload; answer with result_ack."""
        try:
            data = await _run(upload, uploads.upload_verify, upload, msg=msg)
        except uploads.BadUpdate as bad:
            await _run(upload, uploads.upload_discard, upload)
            await self._reject(upload.assignment_id, upload.upload_id, bad)
        report = await sync_to_async(uploads.upload_store, thread_sensitive=False)(
            upload, data, msg=msg, bytes_down=self.bytes_down.get(upload.assignment_id, 0)
        )
        try:
            status = await batcher(round_services.assignments_report).submit(report)
        except round_services.AssignmentError:
            await sync_to_async(uploads.upload_discard, thread_sensitive=False)(upload, report)
            raise
        if status == round_services.REPEATED:  # already recorded: keep only the first copy
            await sync_to_async(uploads.upload_discard, thread_sensitive=False)(upload, report)
            status = "accepted"
        else:
            await _run(upload, uploads.upload_discard, upload)
        self.contexts.pop(upload.assignment_id, None)
        self.bytes_down.pop(upload.assignment_id, None)
        await self._send_msg(
            {"type": "result_ack", "assignment": upload.assignment_id, "status": status}
        )

    async def _reject(self, assignment_id: int, upload_id: str, bad: uploads.BadUpdate) -> None:
        """A bad update rejects the assignment (counted once); raises UpdateRejected."""
        self.contexts.pop(assignment_id, None)
        await database_sync_to_async(uploads.upload_reject)(
            worker_id=self.worker_id, assignment_id=assignment_id, bad=bad, upload_id=upload_id
        )

    async def _error(self, code: str, message: str, ref: dict, assignment_id: int | None) -> None:
        if self.worker_id is not None:
            await database_sync_to_async(round_services.bad_frame_count)(
                worker_id=self.worker_id, assignment_id=ref.get("assignment", assignment_id)
            )
        await self._send_msg(wire.error_message(code, message, ref))

    async def _send_msg(self, msg: dict) -> None:
        await self.send(text_data=wire.encode_text(msg))

    async def worker_send(self, event: dict) -> None:
        frame = event["frame"]
        if frame["type"] == "assign" and frame["assignment"] in self.contexts:
            return  # already offered on this connection
        if frame["type"] == "assign" and event.get("context"):
            self.contexts[frame["assignment"]] = event["context"]
        elif frame["type"] == "cancel":
            self.contexts.pop(frame["assignment"], None)
        await self._send_msg(frame)
        if frame["type"] == "assign" and frame["model"].get("push"):
            await self._send_model(frame["model"]["version"], frame["assignment"])

    async def worker_close(self, event: dict) -> None:
        await self.close(code=event["code"])


_models: dict[int, tuple[int, bytes]] = {}  # version id -> (tenant id, artifact); immutable


async def _model_bytes(tenant_id: int, version_id: int) -> bytes | None:
    """A model artifact from this process's small cache, else from storage."""
    cached = _models.get(version_id)
    if cached is None:
        cached = await database_sync_to_async(_load_model)(version_id)
        if cached is None:
            return None
        while len(_models) >= 8:
            _models.pop(next(iter(_models)))
        _models[version_id] = cached
    owner, data = cached
    return data if owner == tenant_id else None


def _load_model(version_id: int) -> tuple[int, bytes] | None:
    model = ModelVersion.objects.select_related("job").filter(pk=version_id).first()
    return (model.job.tenant_id, model_bytes(model)) if model else None


INLINE_BYTES = 64 * 1024


async def _run(upload: uploads.Upload, func, *args, **kwargs):
    """Small uploads staged in memory are handled on the event loop, others in a thread."""
    if upload.path is None and upload.size <= INLINE_BYTES:
        return func(*args, **kwargs)
    return await sync_to_async(func, thread_sensitive=False)(*args, **kwargs)


async def _later(delay: float, task, *args) -> None:
    """Run a task after a delay: a Celery countdown, or a timer here when Celery is eager."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        await database_sync_to_async(task.apply_async)(args, countdown=delay)
        return

    async def run() -> None:
        await asyncio.sleep(delay)
        await database_sync_to_async(task.apply)(args)

    _background.add(task_ := asyncio.ensure_future(run()))
    task_.add_done_callback(_background.discard)


_background: set[asyncio.Future] = set()
_ticker: asyncio.Task | None = None


def _ensure_embedded_ticker() -> None:
    """With eager Celery there is no beat: the server process runs the sweep itself."""
    global _ticker
    if settings.CELERY_TASK_ALWAYS_EAGER and (_ticker is None or _ticker.done()):
        _ticker = asyncio.ensure_future(_tick_forever())


async def _tick_forever() -> None:
    while True:
        await asyncio.sleep(5)
        try:
            await database_sync_to_async(round_services.rounds_sweep)()
            await database_sync_to_async(compute.units_sweep)()
            await database_sync_to_async(analytics.analytics_sweep)()
        except Exception:  # noqa: BLE001 - the sweep must outlive a failed pass
            log.exception("sweep failed")


def _greet(
    token: str, channel_name: str, capabilities: dict
) -> tuple[Worker | None, str, str, list[dict], list[dict]]:
    """A hello's work in one trip to the database thread: the worker its token names (or None
    and why), the channel it replaces, the assignments it still holds, the compute units to
    send it (those it holds, again, and new ones for its free slots), and analytics
    contribution requests (sent through the channel layer, so they arrive after the
    welcome)."""
    worker, why = job_services.worker_authenticate(token)
    if worker is None:
        return None, why, "", [], []
    previous, held = job_services.worker_connect(
        worker_id=worker.pk, channel_name=channel_name, capabilities=capabilities
    )
    worker.capabilities = job_services.clean_capabilities(capabilities)
    units = []
    if compute.may_have_work(worker):
        units = compute.next_unit_frames(worker_id=worker.pk, resend=True)
    analytics.worker_contributions_offer(worker_id=worker.pk, tenant_id=worker.tenant_id)
    return worker, "", previous, held, units

"""Chunked update uploads: staged until complete, checked, then stored and reported.

Small updates (up to CCGSC_UPLOAD_MEMORY_BYTES) are staged in the connection's memory: a
worker that reconnects mid-upload starts again from chunk 0, which costs little. Larger ones
are staged on local disk, keyed by assignment and upload id, so a worker that reconnects (to
this or another server process on the same host) resumes from the last whole chunk it sent.
Only a complete, verified update is written to storage and only then does the database refer
to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.rounds import services, strategies
from apps.rounds.models import Assignment
from ccgsc_client import wire

_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MIN_CHUNK = 1024


class UpdateRejected(wire.WireError):
    """A bad update: the assignment has been rejected and the error counted."""


class BadUpdate(Exception):
    """An update that must be rejected; ``code`` is a wire error code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.message = message or wire.ERROR_CODES[code]


@dataclass
class Upload:
    worker_id: int
    assignment_id: int
    round_id: int
    upload_id: str
    size: int
    sha256: str
    chunk_size: int
    codec: str
    length: int
    max_norm: float | None
    path: Path | None  # None: staged in memory
    next_seq: int = 0
    buffer: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def received(self) -> int:
        return min(self.size, self.next_seq * self.chunk_size)

    @property
    def ref(self) -> dict:
        return {"assignment": self.assignment_id, "upload": self.upload_id}


def upload_context(*, worker_id: int, assignment_id: int, sha256: str) -> dict:
    """The upload context of an assignment that still accepts this update (asks the database)."""
    services.assignment_check_open(
        worker_id=worker_id, assignment_id=assignment_id, sha256=sha256.lower()
    )
    assignment = Assignment.objects.select_related("fl_round__base_model", "fl_round__job").get(
        pk=assignment_id
    )
    fl_round = assignment.fl_round
    return services.upload_context(fl_round.job, fl_round, assignment)


def upload_open(
    *, worker_id: int, msg: dict, context: dict, payload: bytes | None = None
) -> Upload:
    """A new upload for the assignment ``context`` describes (no I/O).

    Raises WireError for a malformed request and BadUpdate for an update that cannot fit.
    With ``payload`` the whole update came in one frame and is staged at once.
    """
    ref = {"assignment": msg["assignment"], "upload": msg["upload"]}
    if not _UPLOAD_ID.match(msg["upload"]):
        raise wire.WireError("bad_message", "upload ids are 8-64 of [A-Za-z0-9_-]", ref)
    if not MIN_CHUNK <= msg["chunk_size"] <= settings.CCGSC_CHUNK_BYTES:
        raise wire.WireError(
            "bad_message", f"chunk_size must be {MIN_CHUNK}..{settings.CCGSC_CHUNK_BYTES}", ref
        )
    _check_declared(msg, codec=context["codec"], length=context["length"])
    on_disk = payload is None and msg["size"] > settings.CCGSC_UPLOAD_MEMORY_BYTES
    path = settings.CCGSC_UPLOAD_DIR / f"a{msg['assignment']}-{msg['upload']}.part"
    upload = Upload(
        worker_id=worker_id,
        assignment_id=msg["assignment"],
        round_id=context["round_id"],
        upload_id=msg["upload"],
        size=msg["size"],
        sha256=msg["sha256"].lower(),
        chunk_size=msg["chunk_size"],
        codec=msg["codec"],
        length=context["length"],
        max_norm=context["max_norm"],
        path=path if on_disk else None,
    )
    if payload is not None:
        upload.buffer, upload.next_seq = bytearray(payload), 1
    return upload


def _check_declared(msg: dict, *, codec: str, length: int) -> None:
    if msg["codec"] != codec:
        raise BadUpdate("wrong_dtype", f"this job takes updates in codec {codec!r}")
    if msg["length"] != length:
        raise BadUpdate("wrong_shape", f"the model has {length} parameters, not {msg['length']}")
    if msg["size"] != wire.tensor_nbytes(codec, length):
        raise BadUpdate("too_large", f"an update is {wire.tensor_nbytes(codec, length)} bytes")


def upload_resume(upload: Upload) -> None:
    """Disk staging: keep the whole chunks already staged; a torn last chunk is cut off."""
    assert upload.path is not None
    upload.path.parent.mkdir(parents=True, exist_ok=True)
    staged = upload.path.stat().st_size if upload.path.exists() else 0
    upload.next_seq = min(
        staged // upload.chunk_size, wire.chunk_count(upload.size, upload.chunk_size)
    )
    with open(upload.path, "ab") as handle:
        handle.truncate(upload.received)


def upload_chunk(upload: Upload, *, seq: int, crc: int, payload: memoryview) -> bool:
    """Append the next chunk; a repeated chunk is acknowledged again and ignored."""
    ref = {**upload.ref, "seq": seq}
    if seq < upload.next_seq:
        return False
    if seq > upload.next_seq or upload.received >= upload.size:
        raise wire.WireError("out_of_order", f"expected chunk {upload.next_seq}", ref)
    expected = min(upload.chunk_size, upload.size - upload.received)
    if len(payload) != expected:
        raise wire.WireError("too_large", f"chunk {seq} must hold {expected} bytes", ref)
    if wire.crc32(payload) != crc:
        raise wire.WireError("bad_checksum", f"chunk {seq} fails its CRC-32", ref)
    if upload.path is None:
        upload.buffer += payload
    else:
        with open(upload.path, "ab") as handle:
            handle.write(payload)
    upload.next_seq += 1
    return True


def upload_verify(upload: Upload, *, msg: dict) -> bytes:
    """The complete update's bytes once checked. Raises WireError or BadUpdate."""
    if upload.received < upload.size:
        raise wire.WireError(
            "incomplete", f"{upload.received} of {upload.size} bytes arrived", upload.ref
        )
    if msg["num_samples"] < 1:
        raise wire.WireError("bad_message", "num_samples must be at least 1", upload.ref)
    data = bytes(upload.buffer) if upload.path is None else upload.path.read_bytes()
    if wire.sha256_hex(data) != upload.sha256:
        raise BadUpdate("bad_checksum", "the upload fails its SHA-256")
    values = wire.decode_tensor(data, upload.codec, upload.length)
    code = strategies.check_update(values, size=upload.length, max_norm=upload.max_norm)
    if code:
        raise BadUpdate(code)
    return data


def upload_store(upload: Upload, data: bytes, *, msg: dict, bytes_down: int) -> services.Report:
    """Write a verified update to storage; the report that refers to it comes next."""
    key = default_storage.save(
        f"updates/r{upload.round_id}/a{upload.assignment_id}-{upload.upload_id}.{upload.codec}",
        ContentFile(data),
    )
    return services.Report(
        worker_id=upload.worker_id,
        assignment_id=upload.assignment_id,
        update_key=key,
        sha256=upload.sha256,
        nbytes=upload.size,
        num_samples=msg["num_samples"],
        metrics=msg.get("metrics", {}),
        round_id=upload.round_id,
        bytes_down=bytes_down,
    )


def upload_reject(*, worker_id: int, assignment_id: int, bad: BadUpdate, upload_id: str) -> None:
    """Reject the assignment for a bad update and count it; raises UpdateRejected."""
    services.assignment_reject(worker_id=worker_id, assignment_id=assignment_id, code=bad.code)
    raise UpdateRejected(bad.code, bad.message, {"assignment": assignment_id, "upload": upload_id})


def upload_discard(upload: Upload, report: services.Report | None = None) -> None:
    """Drop the staged bytes, and the stored ones of a report that was refused."""
    upload.buffer = bytearray()
    if upload.path is not None:
        upload.path.unlink(missing_ok=True)
    if report is not None:
        default_storage.delete(report.update_key)

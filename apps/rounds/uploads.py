"""Chunked update uploads: staged on local disk until complete, checked, then stored.

A staged upload is keyed by assignment and upload id, so a worker that reconnects (to this or
another server process on the same host) resumes from the last whole chunk it sent. Only a
complete, verified update is written to storage and only then does the database refer to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
    path: Path
    next_seq: int

    @property
    def received(self) -> int:
        return min(self.size, self.next_seq * self.chunk_size)


def upload_begin(*, worker_id: int, msg: dict, context: dict | None = None) -> Upload:
    """Open or resume an upload for an assignment that still accepts an update.

    ``context`` is what the gateway learnt from the assign frame it relayed; without it (a
    reconnect to another server process, a replay) the database is asked.
    """
    ref = {"assignment": msg["assignment"], "upload": msg["upload"]}
    if not _UPLOAD_ID.match(msg["upload"]):
        raise wire.WireError("bad_message", "upload ids are 8-64 of [A-Za-z0-9_-]", ref)
    if not MIN_CHUNK <= msg["chunk_size"] <= settings.CCGSC_CHUNK_BYTES:
        raise wire.WireError(
            "bad_message", f"chunk_size must be {MIN_CHUNK}..{settings.CCGSC_CHUNK_BYTES}", ref
        )
    context = context or _context_from_db(worker_id, msg["assignment"])
    problem = _check_declared(msg, codec=context["codec"], length=context["length"])
    if problem:
        _reject(worker_id, msg["assignment"], problem[0], problem[1], ref)
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
        path=settings.CCGSC_UPLOAD_DIR / f"a{msg['assignment']}-{msg['upload']}.part",
        next_seq=0,
    )
    _resume(upload)
    return upload


def _context_from_db(worker_id: int, assignment_id: int) -> dict:
    services.assignment_check_open(worker_id=worker_id, assignment_id=assignment_id)
    assignment = Assignment.objects.select_related("fl_round__base_model", "fl_round__job").get(
        pk=assignment_id
    )
    fl_round = assignment.fl_round
    return services.upload_context(fl_round.job, fl_round, assignment)


def _check_declared(msg: dict, *, codec: str, length: int) -> tuple[str, str] | None:
    if msg["codec"] != codec:
        return "wrong_dtype", f"this job takes updates in codec {codec!r}"
    if msg["length"] != length:
        return "wrong_shape", f"the model has {length} parameters, not {msg['length']}"
    if msg["size"] != wire.tensor_nbytes(codec, length):
        return "too_large", f"an update of this model is {wire.tensor_nbytes(codec, length)} bytes"
    return None


def _resume(upload: Upload) -> None:
    """Keep the whole chunks already staged; a torn last chunk is cut off."""
    upload.path.parent.mkdir(parents=True, exist_ok=True)
    staged = upload.path.stat().st_size if upload.path.exists() else 0
    upload.next_seq = min(
        staged // upload.chunk_size, wire.chunk_count(upload.size, upload.chunk_size)
    )
    keep = upload.received
    with open(upload.path, "ab") as handle:
        handle.truncate(keep)


def upload_chunk(upload: Upload, *, seq: int, crc: int, payload: memoryview) -> bool:
    """Append the next chunk; a repeated chunk is acknowledged again and ignored."""
    ref = {"assignment": upload.assignment_id, "upload": upload.upload_id, "seq": seq}
    if seq < upload.next_seq:
        return False
    if seq > upload.next_seq or upload.received >= upload.size:
        raise wire.WireError("out_of_order", f"expected chunk {upload.next_seq}", ref)
    expected = min(upload.chunk_size, upload.size - upload.received)
    if len(payload) != expected:
        raise wire.WireError("too_large", f"chunk {seq} must hold {expected} bytes", ref)
    if wire.crc32(payload) != crc:
        raise wire.WireError("bad_checksum", f"chunk {seq} fails its CRC-32", ref)
    with open(upload.path, "ab") as handle:
        handle.write(payload)
    upload.next_seq += 1
    return True


def upload_finish(upload: Upload, *, msg: dict, bytes_down: int = 0) -> str:
    """Verify the complete update, store it, and report it on the assignment."""
    ref = {"assignment": upload.assignment_id, "upload": upload.upload_id}
    if upload.received < upload.size:
        raise wire.WireError("incomplete", f"{upload.received} of {upload.size} bytes arrived", ref)
    if msg["num_samples"] < 1:
        raise wire.WireError("bad_message", "num_samples must be at least 1", ref)
    data = upload.path.read_bytes()
    if wire.sha256_hex(data) != upload.sha256:
        _discard(upload)
        _reject(upload.worker_id, upload.assignment_id, "bad_checksum", "SHA-256 mismatch", ref)
    code = strategies.check_update(
        wire.decode_tensor(data, upload.codec, upload.length),
        size=upload.length,
        max_norm=upload.max_norm,
    )
    if code:
        _discard(upload)
        _reject(upload.worker_id, upload.assignment_id, code, wire.ERROR_CODES[code], ref)
    key = default_storage.save(
        f"updates/a{upload.assignment_id}/{upload.upload_id}.{upload.codec}", ContentFile(data)
    )
    try:
        status = services.assignment_report(
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
    except services.AssignmentError:
        default_storage.delete(key)
        raise
    finally:
        _discard(upload)
    return status


def _discard(upload: Upload) -> None:
    upload.path.unlink(missing_ok=True)


def _reject(worker_id: int, assignment_id: int, code: str, message: str, ref: dict) -> None:
    services.assignment_reject(worker_id=worker_id, assignment_id=assignment_id, code=code)
    raise UpdateRejected(code, message, ref)

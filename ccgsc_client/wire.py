"""The worker wire format (docs/protocol.md): frames, message schemas, codecs, checksums.

Both the server's gateway and the Python worker import this module; the browser worker
implements the same format. Control messages are JSON text frames; tensors travel in binary
frames laid out as ``MAGIC | u32 header length (big-endian) | JSON header | payload``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
MAGIC = b"CCG1"
_PREFIX = struct.Struct(">4sI")
MAX_HEADER_BYTES = 4096

# Close codes (WebSocket close frames sent by the server).
CLOSE_BAD_TOKEN = 4401  # unknown, revoked or expired worker token
CLOSE_FORBIDDEN = 4403  # worker disabled
CLOSE_HELLO_TIMEOUT = 4408  # no hello within the allowed time
CLOSE_BAD_PROTOCOL = 4400  # unsupported protocol version or first frame not a hello
CLOSE_REPLACED = 4409  # the same worker connected again elsewhere

# Error codes carried by {"type": "error", "code": ...} frames.
ERROR_CODES = {
    "bad_frame": "the frame could not be parsed",
    "unknown_type": "the message type is not part of the protocol",
    "bad_message": "a field is missing or has the wrong type",
    "too_large": "the frame or upload exceeds the size limit",
    "unknown_assignment": "no such assignment for this worker",
    "wrong_round": "the assignment's round is no longer accepting work",
    "wrong_shape": "the update's length does not match the model",
    "wrong_dtype": "the update's codec or dtype is not accepted",
    "not_finite": "the update contains NaN or Inf",
    "norm_too_large": "the update's L2 norm exceeds the job's bound",
    "bad_checksum": "a chunk's CRC-32 or the upload's SHA-256 does not match",
    "out_of_order": "a chunk arrived before the one expected",
    "incomplete": "the result arrived before every chunk of its upload",
    "replayed": "this assignment already has an accepted update",
    "unknown_model": "no such model version for this worker",
    "bad_result": "the unit's result does not fit the unit or its kernel",
    "bad_contribution": "the analytics contribution lies outside the job's bounds",
}

CODECS = {"f32": np.dtype("<f4"), "f16": np.dtype("<f2")}

# Message schemas: type -> {field: (python type(s), required)}.
_NUM = (int, float)
SCHEMAS: dict[str, dict[str, tuple[Any, bool]]] = {
    # worker -> server
    "hello": {"protocol": (int, True), "token": (str, True), "capabilities": (dict, False)},
    "heartbeat": {"busy": (bool, False)},
    "accept": {"assignment": (int, True)},
    "decline": {"assignment": (int, True), "reason": (str, False)},
    "model_request": {"version": (int, True), "assignment": (int, False)},
    "upload_begin": {
        "assignment": (int, True),
        "upload": (str, True),
        "size": (int, True),
        "sha256": (str, True),
        "chunk_size": (int, True),
        "codec": (str, True),
        "length": (int, True),
    },
    "result": {
        "assignment": (int, True),
        "upload": (str, True),
        "num_samples": (int, True),
        "metrics": (dict, False),
    },
    "unit_result": {"unit": (int, True), "result": (dict, True), "seconds": (_NUM, True)},
    "contribution": {"contribution": (int, True), "result": (dict, True)},
    # server -> worker
    "welcome": {"worker": (int, True), "protocol": (int, True), "heartbeat_s": (_NUM, True)},
    "pong": {},
    "assign": {
        "assignment": (int, True),
        "job": (int, True),
        "round": (int, True),
        "kernel": (str, True),
        "config": (dict, True),
        "model": (dict, True),
        "upload": (dict, True),
        "deadline": (str, True),
    },
    "cancel": {"assignment": (int, True), "reason": (str, False)},
    "upload_ready": {"upload": (str, True), "next_seq": (int, True)},
    "chunk_ack": {"upload": (str, True), "seq": (int, True)},
    "result_ack": {"assignment": (int, True), "status": (str, True)},
    "unit": {
        "unit": (int, True),
        "job": (int, True),
        "kernel": (str, True),
        "config": (dict, True),
        "spec": (dict, True),
        "deadline": (str, True),
    },
    "unit_ack": {"unit": (int, True), "status": (str, True)},
    "contribute": {"contribution": (int, True), "job": (int, True), "config": (dict, True)},
    "contribution_ack": {"contribution": (int, True), "status": (str, True)},
    "error": {"code": (str, True), "message": (str, True), "ref": (dict, False)},
}
BINARY_SCHEMAS: dict[str, dict[str, tuple[Any, bool]]] = {
    "chunk": {"upload": (str, True), "seq": (int, True), "crc32": (int, True)},
    "model": {"version": (int, True), "seq": (int, True), "total": (int, True)},
    # A whole update that fits in one chunk: upload_begin, its chunk and result in one frame.
    "update": {
        "assignment": (int, True),
        "upload": (str, True),
        "sha256": (str, True),
        "codec": (str, True),
        "length": (int, True),
        "num_samples": (int, True),
        "metrics": (dict, False),
    },
}


class WireError(Exception):
    """A frame that breaks the protocol; ``code`` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str, ref: dict | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref or {}

    def frame(self) -> dict:
        return error_message(self.code, self.message, self.ref)


def error_message(code: str, message: str, ref: dict | None = None) -> dict:
    msg: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref:
        msg["ref"] = ref
    return msg


def _check_fields(kind: str, msg: dict, schema: dict[str, tuple[Any, bool]]) -> None:
    for field, (types, required) in schema.items():
        if field not in msg:
            if required:
                raise WireError("bad_message", f"{kind}: missing field {field!r}")
            continue
        value = msg[field]
        # bool is an int subclass in Python; the protocol never accepts one for a number.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
            raise WireError("bad_message", f"{kind}: field {field!r} has the wrong type")


def _tuple(types: Any) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def validate(msg: Any, schemas: dict = SCHEMAS) -> dict:
    """Check a decoded message against its schema; return it or raise WireError."""
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise WireError("bad_message", "a message is a JSON object with a string 'type'")
    schema = schemas.get(msg["type"])
    if schema is None:
        raise WireError("unknown_type", f"unknown message type {msg['type']!r}")
    _check_fields(msg["type"], msg, schema)
    return msg


def encode_text(msg: dict) -> str:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


def _strict_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a double")
    return value


def _loads(data: str | bytes) -> object:
    """RFC 8259 JSON only: no NaN or Infinity tokens, no number too large for a double (it
    would read as an infinity), and no nesting deep enough to crash."""
    return json.loads(data, parse_constant=_strict_constant, parse_float=_finite_float)


def decode_text(text: str | bytes) -> dict:
    try:
        msg = _loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WireError("bad_frame", "text frame is not valid JSON") from None
    return validate(msg)


def encode_binary(header: dict, payload: bytes | memoryview = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(f"a binary frame header is limited to {MAX_HEADER_BYTES} bytes")
    return b"".join((_PREFIX.pack(MAGIC, len(head)), head, payload))


def decode_binary(frame: bytes) -> tuple[dict, memoryview]:
    """Split a binary frame into its validated header and a view of its payload."""
    if len(frame) < _PREFIX.size:
        raise WireError("bad_frame", "binary frame shorter than its prefix")
    magic, head_len = _PREFIX.unpack_from(frame)
    if magic != MAGIC:
        raise WireError("bad_frame", "binary frame does not start with the protocol magic")
    if head_len > MAX_HEADER_BYTES or _PREFIX.size + head_len > len(frame):
        raise WireError("bad_frame", "binary frame header length is out of range")
    end = _PREFIX.size + head_len
    try:
        header = _loads(bytes(frame[_PREFIX.size : end]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WireError("bad_frame", "binary frame header is not valid JSON") from None
    return validate(header, BINARY_SCHEMAS), memoryview(frame)[end:]


def crc32(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_tensor(values: np.ndarray, codec: str = "f32") -> bytes:
    """A 1-D float array as little-endian bytes in the codec's dtype."""
    if codec not in CODECS:
        raise WireError("wrong_dtype", f"unknown codec {codec!r}")
    return np.ascontiguousarray(values, dtype=CODECS[codec]).tobytes()


def decode_tensor(data: bytes | memoryview, codec: str, length: int) -> np.ndarray:
    """Bytes in the codec's dtype back to a new float32 array of ``length`` values."""
    dtype = CODECS.get(codec)
    if dtype is None:
        raise WireError("wrong_dtype", f"unknown codec {codec!r}")
    if len(data) != length * dtype.itemsize:
        raise WireError("wrong_shape", f"expected {length} values of {codec}")
    return np.frombuffer(data, dtype=dtype).astype(np.float32)


def tensor_nbytes(codec: str, length: int) -> int:
    if codec not in CODECS:
        raise WireError("wrong_dtype", f"unknown codec {codec!r}")
    return CODECS[codec].itemsize * length


def split_chunks(data: bytes, chunk_size: int) -> Iterator[tuple[int, memoryview]]:
    """(seq, chunk) pairs; an empty payload still yields no chunk."""
    view = memoryview(data)
    for seq, start in enumerate(range(0, len(data), chunk_size)):
        yield seq, view[start : start + chunk_size]


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)

"""Conformance of the browser's wire module (static/worker/wire.js) with ccgsc_client.wire."""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ccgsc_client import wire
from kernels.node_runner import run_node_tests

ROOT = Path(__file__).resolve().parent.parent
NODE_TESTS = Path("static") / "worker" / "wire.test.mjs"
NODE = shutil.which("node")
MIN_NODE_TESTS = 35
PYTHON_INT_DIGITS = 4300  # the interpreter's default limit on int(str) digits
# wire.js refuses more arrays and objects open at once than this (its private MAX_DEPTH).
# Python's parser refuses nesting only where it would exhaust the recursion limit, which
# depends on the caller's stack; this bound must stay well under that everywhere.
JS_MAX_DEPTH = 512
# Nesting that no Python parser survives: far beyond the default recursion limit.
PAST_PYTHON_DEPTH = 5000
# Extra stack frames under which Python must still read JS_MAX_DEPTH levels.
STACK_MARGIN = 300

# Raw JSON tokens put in place of each field of every schema; Python decides their fate.
TOKENS = [
    "0",
    "4",
    "-0",
    "-7",
    "4.0",
    "4e0",
    "4E+2",
    "2.5",
    "-0.0",
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "9007199254740993",
    "123456789012345678901234567890",
    "true",
    "false",
    "null",
    '"4"',
    '""',
    "[]",
    "[4]",
    "{}",
    '{"a":1}',
]

# Python values put in place of each field when validating messages that were never JSON.
VALUES: list[Any] = [
    0,
    7,
    -1,
    2**53,
    2.5,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    None,
    "4",
    "",
    [],
    [1],
    {},
    {"a": 1},
]

SAMPLES: dict[str, Any] = {
    "int": 5021,
    "float": 0.25,
    "str": "k3Jx9QeZ0aLmP2sT",
    "dict": {"loss": 0.6931, "accuracy": 0.72, "note": "caf\u00e9 \U0001f600"},
    "bool": True,
    "list": [1, "a"],
}


# --- helpers -------------------------------------------------------------------------------


def tag(value: Any) -> Any:
    """A JSON-safe copy of a value: NaN, infinities and -0.0 become {"$float": name}."""
    if isinstance(value, float):
        if math.isnan(value):
            return {"$float": "nan"}
        if math.isinf(value):
            return {"$float": "inf" if value > 0 else "-inf"}
        if value == 0 and math.copysign(1.0, value) < 0:
            return {"$float": "-0"}
        return value
    # Loops rather than comprehensions: one frame a level, for values nested JS_MAX_DEPTH deep.
    if isinstance(value, dict):
        tagged = {}
        for key, item in value.items():
            tagged[key] = tag(item)
        return tagged
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            items.append(tag(item))
        return items
    return value


def has_integral_float(value: Any) -> bool:
    """Whether a value holds a float such as 4.0, which JavaScript would write as 4."""
    if isinstance(value, float):
        negative_zero = value == 0 and math.copysign(1.0, value) < 0
        return value.is_integer() and not negative_zero  # JavaScript writes -0 as -0.0
    if isinstance(value, dict):
        return any(has_integral_float(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_integral_float(item) for item in value)
    return False


def outcome(call: Callable[[], Any]) -> dict[str, Any]:
    """What the Python module does: {"ok": result} or {"error": code, "message", "ref"}."""
    try:
        return {"ok": tag(call())}
    except wire.WireError as err:
        return {"error": err.code, "message": err.message, "ref": tag(err.ref)}


def type_names(types: Any) -> Any:
    return [t.__name__ for t in types] if isinstance(types, tuple) else types.__name__


def schema_data(schemas: dict[str, dict[str, tuple[Any, bool]]]) -> dict[str, Any]:
    return {
        kind: {field: [type_names(types), required] for field, (types, required) in fields.items()}
        for kind, fields in schemas.items()
    }


def sample(types: Any) -> Any:
    first = types[0] if isinstance(types, tuple) else types
    return json.loads(json.dumps(SAMPLES[first.__name__]))


def full_message(kind: str, fields: dict[str, tuple[Any, bool]]) -> dict[str, Any]:
    return {"type": kind, **{field: sample(types) for field, (types, _) in fields.items()}}


def json_object(pairs: list[tuple[str, str]]) -> str:
    """An object's JSON text from (key, raw JSON value) pairs, duplicates kept."""
    return "{" + ",".join(f"{json.dumps(key)}:{raw}" for key, raw in pairs) + "}"


def field_variants(kind: str, fields: dict[str, tuple[Any, bool]]) -> Iterator[tuple[str, str]]:
    """(name, JSON text) of a message with one field missing or replaced by each token."""
    base = full_message(kind, fields)
    pairs = [(key, json.dumps(value)) for key, value in base.items()]
    for index, (field, _) in enumerate(pairs):
        if field != "type":
            yield f"{kind} without {field}", json_object(pairs[:index] + pairs[index + 1 :])
        for token in TOKENS:
            replaced = pairs[:index] + [(field, token)] + pairs[index + 1 :]
            yield f"{kind} with {field}={token}", json_object(replaced)


def frame_bytes(header: bytes, payload: bytes = b"", magic: bytes = wire.MAGIC) -> bytes:
    return magic + struct.pack(">I", len(header)) + header + payload


def nested(depth: int, inner: str = "", array: bool = True) -> str:
    """``depth`` levels of arrays around ``inner``, or of objects ending in an empty one."""
    if array:
        return "[" * depth + inner + "]" * depth
    return '{"k":' * (depth - 1) + "{}" + "}" * (depth - 1)


def hello_nested(depth: int, inner: str = "", array: bool = True) -> str:
    """A valid hello whose arrays or objects reach ``depth`` levels in all (depth >= 3)."""
    # The message and its capabilities are the first two levels.
    return '{"type":"hello","protocol":1,"token":"t","capabilities":{"a":' + (
        nested(depth - 2, inner, array) + "}}"
    )


def model_header_nested(depth: int) -> bytes:
    """A valid binary model header whose arrays reach ``depth`` levels in all (depth >= 2)."""
    return b'{"type":"model","version":1,"seq":0,"total":1,"x":' + nested(depth - 1).encode() + b"}"


def at_stack_depth(frames: int, call: Callable[[], Any]) -> Any:
    """The result of ``call`` made under ``frames`` extra Python frames."""
    return call() if frames == 0 else at_stack_depth(frames - 1, call)


def f32_from_bits(bits: list[int] | np.ndarray) -> np.ndarray:
    return np.asarray(bits, dtype="<u4").view("<f4")


@contextmanager
def default_int_digits() -> Iterator[None]:
    """Run with Python's default limit on the digits of ints read from text."""
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(PYTHON_INT_DIGITS)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(previous)


# --- vectors -------------------------------------------------------------------------------


def definitions() -> dict[str, Any]:
    public = [
        name
        for name, obj in vars(wire).items()
        if not name.startswith("_")
        and (name.isupper() or getattr(obj, "__module__", None) == wire.__name__)
    ]
    return {
        "PROTOCOL_VERSION": wire.PROTOCOL_VERSION,
        "MAGIC": wire.MAGIC.hex(),
        "MAX_HEADER_BYTES": wire.MAX_HEADER_BYTES,
        "close_codes": {name: value for name, value in vars(wire).items() if name[:6] == "CLOSE_"},
        "ERROR_CODES": wire.ERROR_CODES,
        "CODECS": {
            name: {"itemsize": dtype.itemsize, "dtype": dtype.str}
            for name, dtype in wire.CODECS.items()
        },
        "SCHEMAS": schema_data(wire.SCHEMAS),
        "BINARY_SCHEMAS": schema_data(wire.BINARY_SCHEMAS),
        "api": public,
    }


def text_inputs() -> Iterator[tuple[str, str]]:
    for kind, fields in wire.SCHEMAS.items():
        full = full_message(kind, fields)
        required = {"type": kind} | {f: full[f] for f, (_, req) in fields.items() if req}
        yield f"{kind}, every field, compact", wire.encode_text(full)
        yield f"{kind}, every field, spaced", json.dumps(full)
        yield f"{kind}, required fields only", wire.encode_text(required)
        yield f"{kind} with an unknown extra field", wire.encode_text({**full, "zz": [1, None]})
        yield from field_variants(kind, fields)
    accept = '{"type":"accept","assignment":4}'
    structural = {
        "not JSON": "not json",
        "empty text": "",
        "only whitespace": " \t\r\n",
        "an unclosed object": '{"type":"accept"',
        "a trailing comma": '{"type":"accept","assignment":4,}',
        "a missing comma": '{"type":"accept" "assignment":4}',
        "single quotes": "{'type':'accept','assignment':4}",
        "a leading zero": '{"type":"accept","assignment":04}',
        "a bare minus": '{"type":"accept","assignment":-}',
        "a dot without digits": '{"type":"accept","assignment":4.}',
        "an exponent without digits": '{"type":"accept","assignment":4e}',
        "a plus sign": '{"type":"accept","assignment":+4}',
        "-NaN": '{"type":"welcome","worker":1,"protocol":1,"heartbeat_s":-NaN}',
        "NaN where a float belongs": '{"type":"welcome","worker":1,"protocol":1,"heartbeat_s":NaN}',
        "Infinity where a float belongs": '{"type":"welcome","worker":1,"protocol":1,'
        '"heartbeat_s":Infinity}',
        "-Infinity where a float belongs": '{"type":"welcome","worker":1,"protocol":1,'
        '"heartbeat_s":-Infinity}',
        "NaN in free-form metrics": '{"type":"result","assignment":4,"upload":"u",'
        '"num_samples":1,"metrics":{"loss":NaN}}',
        "-Infinity deep in free-form metrics": '{"type":"result","assignment":4,"upload":"u",'
        '"num_samples":1,"metrics":{"v":[1,[{"w":-Infinity}]]}}',
        "Infinity in an unknown extra field": '{"type":"pong","zz":[Infinity]}',
        "NaN as a whole text": "NaN",
        "Infinity run into a digit": '{"type":"pong","zz":Infinity1}',
        "a number too large for a double": '{"type":"welcome","worker":1,"protocol":1,'
        '"heartbeat_s":1e999}',
        "lowercase nan": '{"type":"welcome","worker":1,"protocol":1,"heartbeat_s":nan}',
        "a truncated literal": '{"type":"heartbeat","busy":tru}',
        "garbage after the object": accept + " x",
        "a second object": accept + "{}",
        "JSON whitespace around": " \n\t" + accept + "\r\n ",
        "a no-break space before": "\u00a0" + accept,
        "a byte order mark before": "\ufeff" + accept,
        "a raw newline in a string": '{"type":"accept\n","assignment":4}',
        "a raw DEL in a string": '{"type":"decline","assignment":4,"reason":"\x7f"}',
        "an unknown escape": '{"type":"decline","assignment":4,"reason":"\\x41"}',
        "a short unicode escape": '{"type":"decline","assignment":4,"reason":"\\u12"}',
        "a bad unicode escape": '{"type":"decline","assignment":4,"reason":"\\u12G4"}',
        "every escape": '{"type":"decline","assignment":4,"reason":"\\"\\\\\\/\\b\\f\\n\\r\\t"}',
        "unicode escapes": '{"type":"decline","assignment":4,"reason":"\\u00e9\\uD83D\\ude00"}',
        "a lone surrogate escape": '{"type":"decline","assignment":4,"reason":"\\ud800x"}',
        "raw non-ASCII text": '{"type":"decline","assignment":4,"reason":"caf\u00e9 \U0001f600"}',
        "an escaped type": '{"\\u0074ype":"\\u0061ccept","assignment":4}',
        "a JSON array": "[1,2]",
        "a JSON string": '"accept"',
        "a JSON number": "4",
        "JSON null": "null",
        "an empty object": "{}",
        "no type": '{"no":"type"}',
        "a numeric type": '{"type":5}',
        "a null type": '{"type":null}',
        "a list type": '{"type":["accept"]}',
        "a repeated field, the last one good": '{"type":"accept","assignment":"x","assignment":4}',
        "a repeated field, the last one a float": '{"type":"accept","assignment":4,'
        '"assignment":4.0}',
        "a repeated type": '{"type":"hello","type":"accept","assignment":1}',
        "a __proto__ member holding the type": '{"__proto__":{"type":"accept","assignment":4}}',
        "a __proto__ member beside the fields": '{"type":"accept","assignment":4,"__proto__":5}',
        "a nested __proto__": '{"type":"result","assignment":4,"upload":"u","num_samples":1,'
        '"metrics":{"__proto__":{"loss":1}}}',
        "nested containers": '{"type":"assign","assignment":1,"job":2,"round":3,"kernel":"k",'
        '"config":{"a":[[[{"b":[]}]]],"c":{}},"model":{"x":null},"upload":{},"deadline":"d"}',
        "deep nesting within Python's recursion limit": '{"type":"hello","protocol":1,"token":"t",'
        '"capabilities":{"a":' + "[" * 200 + "]" * 200 + "}}",
        "arrays nested to the browser's limit": hello_nested(JS_MAX_DEPTH),
        "arrays nested to the browser's limit around a value": hello_nested(JS_MAX_DEPTH, "7"),
        "objects nested to the browser's limit": hello_nested(JS_MAX_DEPTH, array=False),
        "arrays nested past Python's recursion limit": hello_nested(PAST_PYTHON_DEPTH),
        "objects nested past Python's recursion limit": hello_nested(
            PAST_PYTHON_DEPTH, array=False
        ),
        "bare arrays nested past Python's recursion limit": nested(PAST_PYTHON_DEPTH),
        "unclosed arrays past Python's recursion limit": "[" * PAST_PYTHON_DEPTH,
        "brackets inside a string are not nesting": '{"type":"decline","assignment":4,'
        '"reason":"' + nested(PAST_PYTHON_DEPTH) + '"}',
        "an int of the most digits Python reads": '{"type":"accept","assignment":'
        + "9" * PYTHON_INT_DIGITS
        + "}",
        "an int of one digit too many": '{"type":"accept","assignment":'
        + "9" * (PYTHON_INT_DIGITS + 1)
        + "}",
        "a float of many digits": '{"type":"welcome","worker":1,"protocol":1,"heartbeat_s":'
        + "9" * 5000
        + ".5}",
        "an unknown type": '{"type":"teleport"}',
    }
    yield from structural.items()
    for unknown in [
        "",
        "Hello",
        "hello ",
        "constructor",
        "__proto__",
        "toString",
        "hasOwnProperty",
        "it's",
        'say "hi"',
        "both ' and \"",
        "back\\slash",
        "tab\tnew\nline\r\x00\x1f\x7f",
        "caf\u00e9",
        "\u00a0\u00ad\u200b\u2028\ufeff",
        "\U0001f600",
        "\ud800",
    ]:
        yield f"the unknown type {unknown!r}", json.dumps({"type": unknown})


def byte_inputs(fields: str) -> Iterator[tuple[str, bytes]]:
    """JSON bytes of an object with these members in the encodings json.loads detects."""
    text = "{" + fields + ',"s":"caf\u00e9 \U0001f600"}'
    yield "UTF-8", text.encode()
    yield "UTF-8 with a byte order mark", b"\xef\xbb\xbf" + text.encode()
    yield "UTF-8 with two byte order marks", b"\xef\xbb\xbf" * 2 + text.encode()
    yield "UTF-16 with a byte order mark", text.encode("utf-16")
    yield "UTF-16-BE with a byte order mark", b"\xfe\xff" + text.encode("utf-16-be")
    yield "UTF-16-LE", text.encode("utf-16-le")
    yield "UTF-16-BE", text.encode("utf-16-be")
    yield "UTF-32 with a byte order mark", text.encode("utf-32")
    yield "UTF-32-BE with a byte order mark", b"\x00\x00\xfe\xff" + text.encode("utf-32-be")
    yield "UTF-32-LE", text.encode("utf-32-le")
    yield "UTF-32-BE", text.encode("utf-32-be")
    yield "UTF-16-LE of odd length", text.encode("utf-16-le") + b" "
    yield "UTF-32-LE of a length not a multiple of 4", text.encode("utf-32-le") + b"  "
    yield "two bytes of UTF-16-LE", b"4\x00"
    yield "two bytes of UTF-16-BE", b"\x004"
    yield "two bytes of UTF-8", b"{}"
    yield "three bytes", b"{}\x00"
    yield "no bytes", b""
    head = ("{" + fields + ',"s":"').encode()
    strings = {
        "an encoded surrogate pair": b"\xed\xa0\xbd\xed\xb8\x80",
        "an encoded lone high surrogate": b"\xed\xa0\x80",
        "an encoded lone low surrogate": b"\xed\xbf\xbf",
        "a truncated encoded surrogate": b"\xed\xa0",
        "an overlong NUL": b"\xc0\x80",
        "an overlong 3-byte sequence": b"\xe0\x80\x80",
        "an overlong 4-byte sequence": b"\xf0\x80\x80\x80",
        "a code point beyond U+10FFFF": b"\xf4\x90\x80\x80",
        "U+10FFFF": b"\xf4\x8f\xbf\xbf",
        "a 0xFF byte": b"\xff",
        "a lone continuation byte": b"\x80",
        "a sequence cut short": b"\xe2\x82",
        "a sequence with a bad continuation": b"\xe2\x82A",
        "every 2-byte boundary": b"\xc2\x80\xdf\xbf",
        "every 3-byte boundary": b"\xe0\xa0\x80\xef\xbf\xbf",
        "a 5-byte lead": b"\xf8\x88\x80\x80\x80",
    }
    for name, raw in strings.items():
        yield f"UTF-8 with {name}", head + raw + b'"}'
    yield "UTF-8 cut short inside a sequence", head + b"\xe2\x82"
    for name, unit in {"a lone high": 0xD800, "a lone low": 0xDC00}.items():
        for order, byteorder in (("le", "little"), ("be", "big")):
            codec = f"utf-16-{order}"
            raw = head.decode().encode(codec) + unit.to_bytes(2, byteorder) + '"}'.encode(codec)
            yield f"UTF-16-{order.upper()} with {name} surrogate", raw
    for name, cp in {"a surrogate": 0xD800, "a code point beyond U+10FFFF": 0x110000}.items():
        raw = head.decode().encode("utf-32-le") + cp.to_bytes(4, "little")
        yield f"UTF-32-LE with {name}", raw + '"}'.encode("utf-32-le")


def text_vectors() -> list[dict[str, Any]]:
    vectors = [
        {"name": name, "text": text, "expect": outcome(lambda text=text: wire.decode_text(text))}
        for name, text in text_inputs()
    ]
    for name, data in byte_inputs('"type":"accept","assignment":1'):
        vectors.append(
            {
                "name": f"{name} as bytes",
                "bytes": data.hex(),
                "expect": outcome(lambda data=data: wire.decode_text(data)),
            }
        )
    return vectors


def validate_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []
    for which, schemas in (("SCHEMAS", wire.SCHEMAS), ("BINARY_SCHEMAS", wire.BINARY_SCHEMAS)):
        messages: list[tuple[str, Any]] = [
            ("a list", ["accept"]),
            ("a string", "accept"),
            ("None", None),
            ("a number", 5),
            ("an empty dict", {}),
            ("a numeric type", {"type": 5}),
            ("a boolean type", {"type": True}),
            ("an unknown type", {"type": "teleport"}),
        ]
        for kind, fields in schemas.items():
            full = full_message(kind, fields)
            messages.append((f"a full {kind}", full))
            for field in fields:
                messages.append(
                    (f"{kind} without {field}", {k: v for k, v in full.items() if k != field})
                )
                for value in VALUES:
                    messages.append((f"{kind} with {field}={value!r}", {**full, field: value}))
        for name, msg in messages:
            assert not has_integral_float(msg), name
            result = outcome(lambda msg=msg, schemas=schemas: wire.validate(msg, schemas))
            vectors.append({"name": name, "schemas": which, "msg": tag(msg), "expect": result})
    return vectors


def encode_vectors(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Messages and the exact text encode_text writes for them (or its refusal)."""
    bits = rng.integers(0, 2**64, size=4000, dtype=np.uint64)
    raw_floats = [float(x) for x in bits.view(np.float64)]
    floats = [x for x in raw_floats if math.isfinite(x) and not x.is_integer()][:1500]
    scaled = [float(x) for x in rng.normal(size=600) * 10.0 ** rng.integers(-12, 12, size=600)]
    rounded = [round(float(x), 4) for x in rng.normal(size=200)]
    specials = [0.1, 1 / 3, 2 / 3, 1e-4, 1.5e-4, 9.999e-5, 1e-5, 0.00011, 123456789.123]
    specials += [5e-324, 2.2250738585072014e-308, 1.7976931348623157e-300, 0.5, -0.0, -2.5]
    specials += [1234567890123456.7, 123456789012345.67, 4503599627370495.5, 1e-7, 1e-320]
    strings = [
        "",
        "plain",
        "caf\u00e9",
        "\U0001f600",
        "\u2028\u2029",
        "\x7f",
        "\x00\x01\x1f",
        '"\\/',
        "\b\f\n\r\t",
        "\ud800",
        "\udfff x",
        "\ufeff",
    ]
    ints = [0, -1, 7, 2**31, 2**32 + 1, 2**53, 2**53 + 2, 2**64, -(2**63), 10**21, 10**22]
    messages: list[tuple[str, Any]] = [
        ("the doc's hello", {"type": "hello", "protocol": 1, "token": "ccw_x", "capabilities": {}}),
        ("floats from random bits", {"type": "result", "metrics": {"v": floats}}),
        ("scaled normal floats", {"type": "result", "metrics": {"v": scaled}}),
        ("rounded floats", {"type": "result", "metrics": {"v": rounded}}),
        ("special floats", {"type": "result", "metrics": {"v": specials}}),
        ("strings", {"type": "decline", "assignment": 4, "reason": strings}),
        ("non-ASCII keys", {"type": "result", "metrics": {s: i for i, s in enumerate(strings)}}),
        ("ints", {"type": "result", "v": ints}),
        ("key order", {"type": "result", "b": 1, "a": 2, "z": {"y": 1, "x": [True, False, None]}}),
        ("empty containers", {"type": "pong", "a": [], "b": {}, "c": [[], [{}]]}),
        ("a bare list", [1, "a", None]),
        ("a bare string", "caf\u00e9"),
    ]
    for kind, fields in wire.SCHEMAS.items():
        messages.append((f"a full {kind}", full_message(kind, fields)))
    refused: list[tuple[str, Any]] = [
        ("NaN", {"type": "result", "metrics": {"loss": math.nan}}),
        ("Infinity", {"type": "welcome", "heartbeat_s": math.inf}),
        ("-Infinity deep inside", {"type": "result", "v": [[{"x": -math.inf}]]}),
    ]
    vectors = []
    for name, msg in messages + refused:
        assert not has_integral_float(msg), name
        try:
            expect: dict[str, Any] = {"ok": wire.encode_text(msg)}
        except ValueError:
            expect = {"error": "ValueError"}
        vectors.append({"name": name, "msg": tag(msg), "expect": expect})
    return vectors


def binary_vectors(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Headers and payloads of every binary frame type and the exact frames encode_binary makes."""
    tensor = wire.encode_tensor(np.array([0.25, -1.5, 3.0], np.float32), "f32")
    payloads = {
        "no payload": b"",
        "a 3-value f32 tensor": tensor,
        "1000 random bytes": rng.bytes(1000),
        "bytes that look like a frame": frame_bytes(b'{"type":"x"}'),
    }
    vectors = []
    for kind, fields in wire.BINARY_SCHEMAS.items():
        full = full_message(kind, fields)
        required = {"type": kind} | {f: full[f] for f, (_, req) in fields.items() if req}
        headers = {
            "every field": full,
            "required fields only": required,
            "extra fields of every JSON kind": {
                **full,
                "text": "caf\u00e9 \U0001f600 \ud800 \x00",
                "numbers": [0.1, -0.0, 1e-7, 2**53, -(2**63), 1.5e-300],
                "flags": [True, False, None],
                "nested": {"a": {"b": [{}]}},
            },
            f"a header of exactly {wire.MAX_HEADER_BYTES} bytes": padded_header(
                full, wire.MAX_HEADER_BYTES
            ),
        }
        for header_name, header in headers.items():
            assert not has_integral_float(header), header_name
            for payload_name, payload in payloads.items():
                frame = wire.encode_binary(header, payload)
                vectors.append(
                    {
                        "name": f"{kind} with {header_name} and {payload_name}",
                        "header": tag(header),
                        "payload": payload.hex(),
                        "frame": frame.hex(),
                        "expect": outcome(lambda frame=frame: decoded(frame)),
                    }
                )
    return vectors


def padded_header(header: dict[str, Any], size: int, char: str = "x") -> dict[str, Any]:
    """The header with a "pad" string of ``char`` making its encoding ``size`` bytes or more."""
    base = len(json.dumps({**header, "pad": ""}, separators=(",", ":")))
    width = len(json.dumps(char)) - 2
    return {**header, "pad": char * -(-(size - base) // width)}


def binary_refusal_vectors() -> list[dict[str, Any]]:
    """Headers encode_binary refuses: non-finite numbers, or more than MAX_HEADER_BYTES."""
    vectors = []
    for kind, fields in wire.BINARY_SCHEMAS.items():
        full = full_message(kind, fields)
        headers = {
            "NaN in its metrics": {**full, "metrics": {"loss": math.nan, "accuracy": 0.5}},
            "Infinity in its metrics": {**full, "metrics": {"loss": math.inf}},
            "-Infinity deep in an extra field": {**full, "x": [1, [{"y": -math.inf}]]},
            f"{wire.MAX_HEADER_BYTES + 1} bytes": padded_header(full, wire.MAX_HEADER_BYTES + 1),
            "few characters but too many bytes once escaped": padded_header(
                full, wire.MAX_HEADER_BYTES + 1, "\u00e9"
            ),
            "too many bytes and NaN": {**padded_header(full, 5000), "nan": math.nan},
        }
        for name, header in headers.items():
            assert not has_integral_float(header), name
            try:
                expect: dict[str, Any] = {"ok": wire.encode_binary(header, b"\x01").hex()}
            except ValueError:
                expect = {"error": "ValueError"}
            vectors.append({"name": f"{kind} with {name}", "header": tag(header), "expect": expect})
    return vectors


def decoded(frame: bytes) -> dict[str, Any]:
    header, payload = wire.decode_binary(frame)
    return {"header": header, "payload": bytes(payload).hex()}


def binary_decode_vectors() -> list[dict[str, Any]]:
    """Frames of every shape, malformed ones included, and what decode_binary makes of them."""
    good = b'{"type":"model","version":1,"seq":0,"total":1}'
    frames: dict[str, bytes] = {
        "no bytes": b"",
        "three bytes of magic": b"CCG",
        "the magic alone": b"CCG1",
        "seven bytes": b"CCG1\x00\x00\x00",
        "another magic": frame_bytes(good, magic=b"XXXX"),
        "a lowercase magic": frame_bytes(good, magic=b"ccg1"),
        "an older magic": frame_bytes(good, magic=b"CCG0"),
        "a header length beyond the frame": b"CCG1\x00\x00\x00\x09{}",
        "a header length of 2**32 - 1": b"CCG1\xff\xff\xff\xff" + good,
        "a header length just over the limit, all present": b"CCG1\x00\x00\x10\x01"
        + good.ljust(4097),
        "a header of exactly the limit": frame_bytes(good.ljust(wire.MAX_HEADER_BYTES), b"xy"),
        "an empty header": frame_bytes(b"", good),
        "a header that is not JSON": frame_bytes(b"no", b"\x00"),
        "a header cut short": frame_bytes(good[:-1], b"}"),
        "a header that is an array": frame_bytes(b"[1]"),
        "a header without a type": frame_bytes(b'{"version":1}'),
        "a text message as a header": frame_bytes(b'{"type":"hello","protocol":1,"token":"t"}'),
        "an unknown header type": frame_bytes(b'{"type":"bogus"}'),
        "a header with a float seq": frame_bytes(good.replace(b'"seq":0', b'"seq":0.0')),
        "a header with NaN where an int belongs": frame_bytes(good.replace(b"0,", b"NaN,")),
        "a header with spaces": frame_bytes(json.dumps(json.loads(good), indent=2).encode()),
        "a header followed by a payload": frame_bytes(good, bytes(range(256))),
        "a header nested within Python's recursion limit": frame_bytes(
            good[:-1] + b',"x":' + b"[" * 100 + b"]" * 100 + b"}"
        ),
        "a header nested to the browser's limit": frame_bytes(model_header_nested(JS_MAX_DEPTH)),
        # As deep as MAX_HEADER_BYTES allows, far past any Python's recursion limit.
        "a header nested past Python's recursion limit": frame_bytes(model_header_nested(2000)),
        "a header with Infinity in an extra field": frame_bytes(good[:-1] + b',"x":Infinity}'),
        "a header with -Infinity in an extra field": frame_bytes(good[:-1] + b',"x":[-Infinity]}'),
        "a header with NaN in its metrics": frame_bytes(
            b'{"type":"update","assignment":1,"upload":"u","sha256":"s","codec":"f32",'
            b'"length":1,"num_samples":1,"metrics":{"loss":NaN}}',
            b"\x00\x00\x00\x00",
        ),
    }
    for kind, fields in wire.BINARY_SCHEMAS.items():
        for name, text in field_variants(kind, fields):
            frames[f"a {name}"] = frame_bytes(text.encode(), b"\x01\x02")
    for name, data in byte_inputs('"type":"model","version":1,"seq":0,"total":1'):
        frames[f"a header in {name}"] = frame_bytes(data, b"\xff")
    return [
        {"name": name, "frame": frame.hex(), "expect": outcome(lambda frame=frame: decoded(frame))}
        for name, frame in frames.items()
    ]


def checksum_vectors(rng: np.random.Generator) -> list[dict[str, Any]]:
    inputs = {
        "no bytes": b"",
        "one byte": b"a",
        "the check string 123456789": b"123456789",
        "32 zero bytes": bytes(32),
        "every byte value": bytes(range(256)),
        "1000 0xFF bytes": b"\xff" * 1000,
        "4097 random bytes": rng.bytes(4097),
        "1 MiB of random bytes": rng.bytes(1 << 20),
    }
    return [
        {
            "name": name,
            "data": data.hex(),
            "crc32": wire.crc32(data),
            "sha256": wire.sha256_hex(data),
        }
        for name, data in inputs.items()
    ]


def f16_inputs(rng: np.random.Generator) -> np.ndarray:
    """float32 bit patterns that probe every corner of rounding to float16."""

    def f32_bits(*values: float) -> list[int]:
        return [int(b) for b in np.array(values, "<f4").view("<u4")]

    edges = f32_bits(
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        1 / 3,
        -2.5,
        65504.0,
        65519.0,
        65519.99609375,  # the largest float32 below 65520
        65520.0,
        -65520.0,
        65536.0,
        1e5,
        3.4028234663852886e38,
        math.inf,
        -math.inf,
        1e-8,
        -1e-8,
        3e-8,
        5.960464477539063e-08,  # 2**-24, the smallest f16 subnormal
        2.0**-25,  # a tie between 0 and 2**-24: 0
        3 * 2.0**-25,  # a tie between 2**-24 and 2**-23: 2**-23
        2.0**-14,  # the smallest f16 normal
        2.0**-14 - 2.0**-25,  # a tie between the largest subnormal and 2**-14: 2**-14
        2.0**-14 - 2.0**-24,  # the largest f16 subnormal
        6e-5,
        1 + 2.0**-11,  # a tie between 1 and the next half: 1
        1 + 3 * 2.0**-11,  # a tie going up to the even neighbour
        2049.0,
        2051.0,
        2.0**-149,  # the smallest float32 subnormal
        1e-40,
    )
    edges += [0x007FFFFF, 0x80000001, 0x33000001, 0x33000000, 0x337FFFFF, 0x38800000, 0x387FFFFF]
    edges += [0x477FEFFF, 0x477FF000, 0x477FE000, 0x477FF001, 0x47800000]
    nans = [0x7FC00000, 0xFFC00000, 0x7FC02000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0x7F802000]
    halves = np.arange(1 << 16, dtype="<u2").view("<f2")
    finite = np.sort(halves[np.isfinite(halves)].astype(np.float64))
    finite = np.unique(finite)
    mids = (finite[:-1] + finite[1:]) / 2  # exact in float32: 12 significant bits
    mids32 = mids.astype("<f4")
    assert np.array_equal(mids32.astype(np.float64), mids)
    mid_bits = mids32.view("<u4")
    around = np.concatenate([mid_bits, mid_bits - 1, mid_bits + 1]).astype("<u4")
    exact = halves[~np.isnan(halves)].astype("<f4").view("<u4")
    random_bits = rng.integers(0, 2**32, size=20000, dtype=np.uint64).astype("<u4")
    normals = (rng.normal(size=5000) * 10.0 ** rng.integers(-9, 6, size=5000)).astype("<f4")
    return np.concatenate(
        [
            np.array(edges + nans, "<u4"),
            exact,
            around,
            random_bits,
            normals.view("<u4"),
        ]
    ).astype("<u4")


def tensor_vectors(rng: np.random.Generator) -> dict[str, Any]:
    f16_in = f16_inputs(rng)
    with np.errstate(over="ignore", invalid="ignore"):
        f16_out = wire.encode_tensor(f32_from_bits(f16_in), "f16")
    f32_in = np.concatenate(
        [
            np.array([0, 0x80000000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x7F800000, 1], "<u4"),
            rng.integers(0, 2**32, size=5000, dtype=np.uint64).astype("<u4"),
            rng.normal(size=1000).astype("<f4").view("<u4"),
        ]
    ).astype("<u4")
    all_halves = np.arange(1 << 16, dtype="<u2").tobytes()
    errors = [
        ("decode", "f32", 4, bytes(12)),
        ("decode", "f32", 3, bytes(12)),
        ("decode", "f16", 6, bytes(12)),
        ("decode", "f16", 5, bytes(11)),
        ("decode", "f16", 0, b""),
        ("decode", "f32", -1, bytes(4)),
        ("decode", "int4", 3, bytes(12)),
        ("decode", "F32", 3, bytes(12)),
        ("decode", "bf16", 6, bytes(12)),
        ("encode", "int4", 2, b""),
        ("encode", "float32", 2, b""),
        ("encode", "", 2, b""),
        ("nbytes", "f32", 15, b""),
        ("nbytes", "f16", 15, b""),
        ("nbytes", "f16", 0, b""),
        ("nbytes", "bf16", 1, b""),
    ]
    calls = []
    for op, codec, length, data in errors:

        def call(op: str = op, codec: str = codec, length: int = length, data: bytes = data) -> Any:
            if op == "decode":
                return wire.decode_tensor(data, codec, length).tobytes().hex()
            if op == "encode":
                return wire.encode_tensor(np.zeros(length, np.float32), codec).hex()
            return wire.tensor_nbytes(codec, length)

        calls.append(
            {
                "op": op,
                "codec": codec,
                "length": length,
                "data": data.hex(),
                "expect": outcome(call),
            }
        )
    return {
        "f16_encode": {"input": f16_in.tobytes().hex(), "output": f16_out.hex()},
        "f32_encode": {
            "input": f32_in.tobytes().hex(),
            "output": wire.encode_tensor(f32_from_bits(f32_in), "f32").hex(),
        },
        "f16_decode": {
            "input": all_halves.hex(),
            "output": wire.decode_tensor(all_halves, "f16", 1 << 16).tobytes().hex(),
        },
        "f32_decode": {
            "input": f32_in.tobytes().hex(),
            "output": wire.decode_tensor(f32_in.tobytes(), "f32", f32_in.size).tobytes().hex(),
        },
        "calls": calls,
    }


def chunk_vectors(rng: np.random.Generator) -> dict[str, Any]:
    vectors = [(0, 4), (1, 4), (4, 4), (5, 4), (10, 3), (1023, 1024), (1024, 1024), (1025, 1024)]
    vectors += [(4096, 1000), (3000, 1), (5000, 4096)]
    out = []
    for size, chunk_size in vectors:
        data = rng.bytes(size)
        out.append(
            {
                "data": data.hex(),
                "chunk_size": chunk_size,
                "chunks": [[seq, bytes(c).hex()] for seq, c in wire.split_chunks(data, chunk_size)],
                "count": wire.chunk_count(size, chunk_size),
            }
        )
    big = [(10**12 + 1, 2**20), (2**40, 2**20), (2**53 - 1, 3), (2**52 + 1, 2**26)]
    counts = [{"size": s, "chunk_size": c, "count": wire.chunk_count(s, c)} for s, c in big]
    return {"split": out, "counts": counts}


def error_frame_vectors() -> list[dict[str, Any]]:
    cases: list[tuple[str, str, dict | None]] = [
        ("bad_checksum", "nope", {"seq": 2}),
        ("bad_frame", "text frame is not valid JSON", None),
        ("replayed", "already accepted", {}),
        ("too_large", "caf\u00e9", {"upload": "u", "seq": 1, "nested": {"a": [1]}}),
    ]
    vectors = []
    for code, message, ref in cases:
        err = wire.WireError(code, message, ref)
        vectors.append(
            {
                "args": [code, message, ref],
                "ref": err.ref,
                "frame": err.frame(),
                "error_message": wire.error_message(code, message, ref),
            }
        )
    return vectors


def build_vectors() -> dict[str, Any]:
    rng = np.random.default_rng(20240607)
    return {
        "definitions": definitions(),
        "text": text_vectors(),
        "validate": validate_vectors(),
        "encode_text": encode_vectors(rng),
        "binary": binary_vectors(rng),
        "binary_refused": binary_refusal_vectors(),
        "nesting": {"limit": JS_MAX_DEPTH},
        "binary_decode": binary_decode_vectors(),
        "checksums": checksum_vectors(rng),
        "tensors": tensor_vectors(rng),
        "chunks": chunk_vectors(rng),
        "error_frames": error_frame_vectors(),
    }


@pytest.fixture(scope="module")
def vectors_text() -> str:
    with default_int_digits():
        return json.dumps(build_vectors(), allow_nan=False)


@pytest.fixture(scope="module")
def vectors(vectors_text: str) -> dict[str, Any]:
    with default_int_digits():
        return json.loads(vectors_text)


# --- tests ---------------------------------------------------------------------------------


def test_the_browser_wire_module_agrees_with_the_python_one_byte_for_byte(
    vectors_text: str, tmp_path: Path
) -> None:
    path = tmp_path / "wire_vectors.json"
    path.write_text(vectors_text)
    run_node_tests(NODE_TESTS, "CCGSC_WIRE_VECTORS", path, min_passes=MIN_NODE_TESTS)


def test_the_wire_module_uses_nothing_a_browser_lacks() -> None:
    source = (ROOT / "static" / "worker" / "wire.js").read_text()
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.DOTALL)
    for name in ("require", "process", "Buffer", "__dirname", "__filename", "import.meta"):
        found = re.search(rf"(?<![\w.$]){re.escape(name)}(?![\w$])", code)
        assert not found, f"wire.js uses {name}, which browsers do not provide"
    assert not re.search(r"^\s*import\b|\bimport\s*\(", code, re.MULTILINE), "wire.js imports"
    assert "globalThis.crypto" in code, "SHA-256 comes from WebCrypto"


def test_the_vectors_hold_valid_and_refused_text_of_every_message_type(
    vectors: dict[str, Any],
) -> None:
    for kind in wire.SCHEMAS:
        mine = [v for v in vectors["text"] if v["name"].startswith(f"{kind} ")]
        assert any("ok" in v["expect"] for v in mine), kind
        if wire.SCHEMAS[kind]:
            assert any(v["expect"].get("error") == "bad_message" for v in mine), kind
    codes = {v["expect"].get("error") for v in vectors["text"]}
    assert {"bad_frame", "bad_message", "unknown_type"} <= codes


def test_the_vectors_hold_every_binary_frame_type_and_every_decoding_error(
    vectors: dict[str, Any],
) -> None:
    kinds = {v["header"]["type"] for v in vectors["binary"]}
    assert kinds == set(wire.BINARY_SCHEMAS)
    assert all("ok" in v["expect"] for v in vectors["binary"])
    codes = {v["expect"].get("error") for v in vectors["binary_decode"]}
    assert {"bad_frame", "bad_message", "unknown_type", None} <= codes


def test_the_vectors_refuse_a_boolean_or_a_float_for_an_int(vectors: dict[str, Any]) -> None:
    by_name = {v["name"]: v["expect"] for v in vectors["text"]}
    for token in ("true", "4.0", "4e0", "null", '"4"'):
        assert by_name[f"accept with assignment={token}"]["error"] == "bad_message", token
    assert "ok" in by_name["accept with assignment=4"]
    assert "ok" in by_name["welcome with heartbeat_s=2.5"]
    assert "ok" in by_name["welcome with heartbeat_s=4"]


def test_the_f16_vectors_reach_zero_subnormals_infinity_and_nan(vectors: dict[str, Any]) -> None:
    halves = np.frombuffer(bytes.fromhex(vectors["tensors"]["f16_encode"]["output"]), "<u2")
    exponent, significand = halves & 0x7C00, halves & 0x03FF
    assert np.any(halves == 0) and np.any(halves == 0x8000)
    assert np.any((exponent == 0) & (significand != 0))
    assert np.any(halves == 0x7C00) and np.any(halves == 0xFC00)
    assert np.any((exponent == 0x7C00) & (significand != 0))


def test_the_vectors_refuse_nan_infinity_and_nesting_past_python(vectors: dict[str, Any]) -> None:
    text = {v["name"]: v["expect"] for v in vectors["text"]}
    bad_text = {"error": "bad_frame", "message": "text frame is not valid JSON", "ref": {}}
    for name in (
        "NaN where a float belongs",
        "Infinity where a float belongs",
        "-Infinity where a float belongs",
        "welcome with heartbeat_s=NaN",
        "welcome with heartbeat_s=-Infinity",
        "NaN in free-form metrics",
        "-Infinity deep in free-form metrics",
        "Infinity in an unknown extra field",
        "arrays nested past Python's recursion limit",
        "objects nested past Python's recursion limit",
        "bare arrays nested past Python's recursion limit",
    ):
        assert text[name] == bad_text, name
    for name in (
        "arrays nested to the browser's limit",
        "arrays nested to the browser's limit around a value",
        "objects nested to the browser's limit",
        "brackets inside a string are not nesting",
    ):
        assert "ok" in text[name], name
    assert text["a number too large for a double"] == bad_text
    binary = {v["name"]: v["expect"] for v in vectors["binary_decode"]}
    bad_header = {**bad_text, "message": "binary frame header is not valid JSON"}
    for name in (
        "a header nested past Python's recursion limit",
        "a header with Infinity in an extra field",
        "a header with -Infinity in an extra field",
        "a header with NaN in its metrics",
        "a header with NaN where an int belongs",
        "a model with seq=NaN",
    ):
        assert binary[name] == bad_header, name
    assert "ok" in binary["a header nested to the browser's limit"]


def test_the_vectors_hold_binary_headers_refused_and_one_of_exactly_the_limit(
    vectors: dict[str, Any],
) -> None:
    refused = vectors["binary_refused"]
    assert {v["header"]["type"] for v in refused} == set(wire.BINARY_SCHEMAS)
    assert all(v["expect"] == {"error": "ValueError"} for v in refused)
    exact = [v for v in vectors["binary"] if "header of exactly" in v["name"]]
    assert len(exact) == len(wire.BINARY_SCHEMAS) * 4
    for vector in exact:
        frame = bytes.fromhex(vector["frame"])
        assert struct.unpack_from(">I", frame, 4)[0] == wire.MAX_HEADER_BYTES, vector["name"]
        assert "ok" in vector["expect"], vector["name"]


def test_python_reads_nesting_past_the_browsers_limit_with_stack_to_spare() -> None:
    """Python reads a level past wire.js's limit even with stack in use: wire.js is stricter."""
    for depth in (JS_MAX_DEPTH, JS_MAX_DEPTH + 1):
        for text in (hello_nested(depth), hello_nested(depth, array=False)):
            msg = at_stack_depth(STACK_MARGIN, lambda text=text: wire.decode_text(text))
            assert msg["type"] == "hello"
        frame = frame_bytes(model_header_nested(depth))
        header, _ = at_stack_depth(STACK_MARGIN, lambda frame=frame: wire.decode_binary(frame))
        assert header["type"] == "model"
    with pytest.raises(wire.WireError, match="bad_frame"):
        wire.decode_text(hello_nested(PAST_PYTHON_DEPTH))

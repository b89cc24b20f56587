"""Tests of the wire format shared by the server, the Python worker and the browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccgsc_client import wire


def test_it_round_trips_a_binary_frame_header_and_payload() -> None:
    frame = wire.encode_binary({"type": "chunk", "upload": "u" * 8, "seq": 3, "crc32": 7}, b"abc")
    header, payload = wire.decode_binary(frame)
    assert header == {"type": "chunk", "upload": "u" * 8, "seq": 3, "crc32": 7}
    assert bytes(payload) == b"abc"


def test_it_lays_out_binary_frames_as_magic_length_header_payload() -> None:
    frame = wire.encode_binary({"type": "model", "version": 1, "seq": 0, "total": 1}, b"\x01")
    head_len = int.from_bytes(frame[4:8], "big")
    assert frame[:4] == b"CCG1"
    assert json.loads(frame[8 : 8 + head_len]) == {
        "type": "model",
        "version": 1,
        "seq": 0,
        "total": 1,
    }
    assert frame[8 + head_len :] == b"\x01"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"CCG",
        b"XXXX\x00\x00\x00\x02{}",
        b"CCG1\x00\x00\x00\x09{}",
        b"CCG1\x00\x00\x00\x02no",
        b"CCG1\x00\x01\x00\x00" + b" " * 70000,
    ],
)
def test_it_rejects_malformed_binary_frames_as_bad_frame(frame: bytes) -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode_binary(frame)
    assert err.value.code == "bad_frame"


def test_it_rejects_a_binary_header_of_an_unknown_type() -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode_binary(wire.encode_binary({"type": "bogus"}))
    assert err.value.code == "unknown_type"


def test_it_validates_text_messages_against_their_schema() -> None:
    msg = wire.decode_text('{"type":"accept","assignment":4}')
    assert msg == {"type": "accept", "assignment": 4}
    with pytest.raises(wire.WireError) as missing:
        wire.decode_text('{"type":"accept"}')
    assert missing.value.code == "bad_message"
    with pytest.raises(wire.WireError) as wrong_type:
        wire.decode_text('{"type":"accept","assignment":"4"}')
    assert wrong_type.value.code == "bad_message"


def test_it_does_not_take_a_boolean_for_a_number() -> None:
    with pytest.raises(wire.WireError):
        wire.decode_text('{"type":"accept","assignment":true}')


@pytest.mark.parametrize("text", ["not json", "[1,2]", '{"no":"type"}', '{"type":5}'])
def test_it_rejects_text_that_is_not_a_typed_object(text: str) -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode_text(text)
    assert err.value.code in {"bad_frame", "bad_message"}


@pytest.mark.parametrize("number", ["1e999", "-1e400", "1.5e309"])
def test_a_float_too_large_for_a_double_is_refused_not_read_as_infinity(number: str) -> None:
    def text(x: str) -> str:
        return '{"type":"unit_result","unit":1,"result":{"x":' + x + '},"seconds":1}'

    with pytest.raises(wire.WireError) as err:
        wire.decode_text(text(number))
    assert err.value.code == "bad_frame"
    header = ('{"type":"chunk","upload":"u","seq":0,"crc32":' + number + "}").encode()
    with pytest.raises(wire.WireError) as err:
        wire.decode_binary(wire.MAGIC + len(header).to_bytes(4, "big") + header)
    assert err.value.code == "bad_frame"
    assert wire.decode_text(text("1.7976931348623157e308"))["result"]["x"] == 1.7976931348623157e308


def test_it_names_unknown_message_types() -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode_text('{"type":"teleport"}')
    assert err.value.code == "unknown_type"


def test_error_frames_carry_a_known_code_and_their_reference() -> None:
    frame = wire.WireError("bad_checksum", "nope", {"seq": 2}).frame()
    assert frame == {"type": "error", "code": "bad_checksum", "message": "nope", "ref": {"seq": 2}}
    assert frame["code"] in wire.ERROR_CODES
    assert wire.validate(frame) is frame


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=0, max_size=300))
def test_f32_tensors_round_trip_exactly(values: list[float]) -> None:
    array = np.array(values, dtype=np.float32)
    data = wire.encode_tensor(array, "f32")
    assert len(data) == wire.tensor_nbytes("f32", array.size)
    np.testing.assert_array_equal(wire.decode_tensor(data, "f32", array.size), array)


def test_f16_tensors_halve_the_bytes_and_stay_close() -> None:
    array = np.linspace(-3, 3, 101, dtype=np.float32)
    data = wire.encode_tensor(array, "f16")
    assert len(data) == 2 * array.size
    np.testing.assert_allclose(wire.decode_tensor(data, "f16", array.size), array, atol=2e-3)


def test_tensors_are_little_endian() -> None:
    assert wire.encode_tensor(np.array([1.0], np.float32)) == b"\x00\x00\x80\x3f"


def test_decoding_a_tensor_of_the_wrong_length_is_wrong_shape() -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode_tensor(b"\x00" * 12, "f32", 4)
    assert err.value.code == "wrong_shape"


def test_an_unknown_codec_is_wrong_dtype() -> None:
    with pytest.raises(wire.WireError) as err:
        wire.encode_tensor(np.zeros(2, np.float32), "int4")
    assert err.value.code == "wrong_dtype"


@pytest.mark.parametrize("size,chunk", [(0, 4), (1, 4), (4, 4), (5, 4), (4096, 1000)])
def test_chunks_cover_the_payload_in_order(size: int, chunk: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    parts = list(wire.split_chunks(data, chunk))
    assert [seq for seq, _ in parts] == list(range(wire.chunk_count(size, chunk)))
    assert b"".join(bytes(part) for _, part in parts) == data


def test_crc32_matches_the_zlib_polynomial() -> None:
    assert wire.crc32(b"123456789") == 0xCBF43926


@pytest.mark.parametrize(
    "text",
    ['{"type":"heartbeat","x":NaN}', '{"type":"pong","v":Infinity}', "[" * 5000 + "]" * 5000],
)
def test_it_refuses_what_json_does_not_allow_and_nesting_that_would_crash(text: str) -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode_text(text)
    assert err.value.code == "bad_frame"


def test_it_never_writes_nan_into_a_binary_header() -> None:
    with pytest.raises(ValueError):
        wire.encode_binary({"type": "update", "metrics": {"loss": float("nan")}})

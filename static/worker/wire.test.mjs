// Tests of wire.js under Node's test runner. Most compare it with ccgsc_client/wire.py on
// vectors that ccgsc_client/test_wire_js.py writes with the Python module during its run and
// names in the CCGSC_WIRE_VECTORS environment variable; without it they are reported as
// skipped. The other tests need no vectors. Run through pytest:
//   python -m pytest ccgsc_client/test_wire_js.py -q -p no:django

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as wire from "./wire.js";

const vectorsPath = process.env.CCGSC_WIRE_VECTORS;
const V = vectorsPath ? JSON.parse(readFileSync(vectorsPath, "utf8")) : null;
const D = V?.definitions;
const NO_VECTORS = {
  skip: "set CCGSC_WIRE_VECTORS to a file written by ccgsc_client/test_wire_js.py",
};

/** A test against the Python module's vectors, skipped when there are none. */
function vectorTest(name, body) {
  test(name, V ? {} : NO_VECTORS, body);
}

// --- helpers ---------------------------------------------------------------------------------

const fromHex = (text) => Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));
const toHex = (bytes) =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");

const FLOATS = { nan: NaN, inf: Infinity, "-inf": -Infinity, "-0": -0 };

// The value a vector describes: {"$float": name} back to NaN, infinities and -0.
function untag(value) {
  if (Array.isArray(value)) return value.map(untag);
  if (value === null || typeof value !== "object") return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === "$float") return FLOATS[value.$float];
  const out = {};
  for (const key of keys) {
    Object.defineProperty(out, key, {
      value: untag(value[key]),
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
  return out;
}

// What a call does, in the vectors' terms.
function outcome(call) {
  try {
    return { ok: call() };
  } catch (err) {
    if (!(err instanceof wire.WireError)) throw err;
    return { error: err.code, message: err.message, ref: err.ref };
  }
}

function expected(expect) {
  return "ok" in expect
    ? { ok: untag(expect.ok) }
    : { error: expect.error, message: expect.message, ref: untag(expect.ref) };
}

// Compare every case, then fail once listing the first few that differ.
function assertAll(cases, check) {
  const failures = [];
  for (const item of cases) {
    try {
      check(item);
    } catch (err) {
      const name = item.name ?? JSON.stringify(item).slice(0, 80);
      failures.push(`${name}: ${err.message.slice(0, 1500)}`);
    }
  }
  assert.equal(
    failures.length,
    0,
    `${failures.length} of ${cases.length} cases differ:\n${failures.slice(0, 10).join("\n")}`,
  );
}

function floatsFromBits(bytes) {
  const bits = new Uint32Array(bytes.length / 4);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < bits.length; i++) bits[i] = view.getUint32(4 * i, true);
  return new Float32Array(bits.buffer);
}

function u16s(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / 2 }, (_, i) => view.getUint16(2 * i, true));
}

function u32s(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / 4 }, (_, i) => view.getUint32(4 * i, true));
}

const isHalfNaN = (h) => (h & 0x7c00) === 0x7c00 && (h & 0x03ff) !== 0;
const isFloatNaN = (f) => (f & 0x7f800000) === 0x7f800000 && (f & 0x007fffff) !== 0;
const hex32 = (n) => "0x" + n.toString(16).padStart(8, "0");

// Equal hex strings, or a message naming the first byte that differs.
function assertSameHex(actual, expected) {
  if (actual === expected) return;
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  const at = Math.floor(i / 2);
  const around = (text) => text.slice(Math.max(0, 2 * at - 16), 2 * at + 32);
  assert.fail(
    `${actual.length / 2} bytes, want ${expected.length / 2}; byte ${at} differs: ` +
      `got ...${around(actual)}, want ...${around(expected)}`,
  );
}

// Python names as this module spells them: snake_case functions become camelCase.
const camel = (name) =>
  name === name.toUpperCase() ? name : name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

// --- definitions -----------------------------------------------------------------------------

vectorTest("it exports every public name of the Python module, and nothing else", () => {
  const expectedNames = D.api.map(camel).sort();
  assert.deepEqual(Object.keys(wire).sort(), expectedNames);
});

vectorTest("it declares the same protocol version, magic, header limit and close codes", () => {
  assert.equal(wire.PROTOCOL_VERSION, D.PROTOCOL_VERSION);
  assert.equal(toHex(wire.MAGIC), D.MAGIC);
  assert.equal(wire.MAX_HEADER_BYTES, D.MAX_HEADER_BYTES);
  const closeCodes = Object.entries(wire).filter(([name]) => name.startsWith("CLOSE_"));
  const mine = Object.fromEntries(closeCodes);
  assert.deepEqual(mine, D.close_codes);
});

vectorTest("it declares the same error codes, in the same order and words", () => {
  assert.equal(JSON.stringify(wire.ERROR_CODES), JSON.stringify(D.ERROR_CODES));
});

vectorTest("it declares the same codecs", () => {
  assert.deepEqual(JSON.parse(JSON.stringify(wire.CODECS)), D.CODECS);
});

vectorTest("it declares the same text message schemas, field for field and in order", () => {
  assert.deepEqual(JSON.parse(JSON.stringify(wire.SCHEMAS)), D.SCHEMAS);
  assert.equal(JSON.stringify(wire.SCHEMAS), JSON.stringify(D.SCHEMAS));
});

vectorTest("it declares the same binary frame schemas, field for field and in order", () => {
  assert.deepEqual(JSON.parse(JSON.stringify(wire.BINARY_SCHEMAS)), D.BINARY_SCHEMAS);
  assert.equal(JSON.stringify(wire.BINARY_SCHEMAS), JSON.stringify(D.BINARY_SCHEMAS));
});

test("its definitions cannot be changed by accident", () => {
  assert.ok(Object.isFrozen(wire.SCHEMAS.hello.protocol));
  assert.ok(Object.isFrozen(wire.ERROR_CODES));
  assert.throws(() => {
    wire.SCHEMAS.accept.assignment = ["str", true];
  }, TypeError);
});

test("it loads in a browser as it is: no imports and no Node-only names", () => {
  const source = readFileSync(new URL("./wire.js", import.meta.url), "utf8");
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  assert.doesNotMatch(code, /^\s*import\b|\bimport\s*\(|\brequire\s*\(/m);
  assert.doesNotMatch(code, /\b(process|Buffer|global|__dirname|__filename|module\.exports)\b/);
  assert.doesNotMatch(code, /\b(window|document|self)\b/);
});

// --- text frames -----------------------------------------------------------------------------

vectorTest("it accepts and refuses text frames as Python does, codes and messages alike", () => {
  assertAll(V.text, (vector) => {
    const input = "bytes" in vector ? fromHex(vector.bytes) : vector.text;
    assert.deepStrictEqual(outcome(() => wire.decodeText(input)), expected(vector.expect));
  });
});

test("it decodes text frames given as bytes in an ArrayBuffer too", () => {
  const bytes = new TextEncoder().encode('{"type":"accept","assignment":4}');
  assert.deepStrictEqual(wire.decodeText(bytes.buffer), { type: "accept", assignment: 4 });
});

vectorTest("it validates messages built in code as Python validates the same values", () => {
  assertAll(V.validate, (vector) => {
    const msg = untag(vector.msg);
    const got = outcome(() => wire.validate(msg, wire[vector.schemas]));
    assert.deepStrictEqual(got, expected(vector.expect));
    if ("ok" in got) assert.equal(got.ok, msg, "validate returns the message itself");
  });
});

test("it validates against the text schemas unless told otherwise", () => {
  assert.throws(() => wire.validate({ type: "chunk", upload: "u", seq: 0, crc32: 1 }), {
    code: "unknown_type",
  });
  const chunk = { type: "chunk", upload: "u", seq: 0, crc32: 1 };
  assert.equal(wire.validate(chunk, wire.BINARY_SCHEMAS), chunk);
});

test("it treats undefined and inherited members as absent, and BigInts as ints", () => {
  assert.throws(() => wire.validate({ type: "accept", assignment: undefined }), {
    code: "bad_message",
    message: "accept: missing field 'assignment'",
  });
  assert.throws(() => wire.validate(Object.create({ type: "pong" })), { code: "bad_message" });
  assert.throws(() => wire.validate({ type: "accept", __proto__: { assignment: 4 } }), {
    message: "accept: missing field 'assignment'",
  });
  const decline = { type: "decline", assignment: 4n, reason: undefined };
  assert.equal(wire.validate(decline), decline);
  assert.equal(wire.encodeText(decline), '{"type":"decline","assignment":4}');
  assert.equal(wire.encodeText([2n ** 64n, -(2n ** 70n)]), `[${2n ** 64n},${-(2n ** 70n)}]`);
});

vectorTest("it encodes text messages to Python's exact text", () => {
  assertAll(V.encode_text, (vector) => {
    const msg = untag(vector.msg);
    if ("ok" in vector.expect) assert.equal(wire.encodeText(msg), vector.expect.ok);
    else assert.throws(() => wire.encodeText(msg), RangeError);
  });
});

test("it reads only RFC 8259 JSON: no NaN or Infinity tokens, and no deep nesting", () => {
  const refused = { code: "bad_frame", message: "text frame is not valid JSON" };
  const tokens = ["NaN", "Infinity", "-Infinity", "-NaN", "nan", "[NaN]", '{"a":[Infinity]}'];
  for (const token of tokens) {
    assert.throws(() => wire.decodeText(`{"type":"pong","x":${token}}`), refused, token);
  }
  assert.throws(() => wire.decodeText("NaN"), refused);
  const pong = (value) => `{"type":"pong","x":${value}}`;
  // 511 levels inside the message make 512 in all, the most it reads.
  assert.deepEqual(wire.decodeText(pong("[".repeat(511) + "]".repeat(511))).type, "pong");
  assert.throws(() => wire.decodeText(pong("[".repeat(512) + "]".repeat(512))), refused);
  assert.throws(() => wire.decodeText("[".repeat(100000)), refused);
  const text = wire.decodeText(pong(`"${"[".repeat(5000)}"`));
  assert.equal(text.x.length, 5000, "brackets in a string are not nesting");
  // A float beyond a double's range would read as an infinity: refused, as the server does.
  for (const big of ["1e999", "-1e400", "[1.5e309]"]) {
    assert.throws(() => wire.decodeText(pong(big)), refused, big);
  }
  assert.equal(wire.decodeText(pong("1.7976931348623157e308")).x, Number.MAX_VALUE);
});

test("it refuses values JSON cannot carry, as Python's json module does", () => {
  const circular = { type: "result" };
  circular.self = circular;
  assert.throws(() => wire.encodeText(circular), TypeError);
  assert.throws(() => wire.encodeText({ type: "x", when: new Date(0) }), TypeError);
  assert.throws(() => wire.encodeText({ type: "x", values: new Float32Array(2) }), TypeError);
  assert.throws(() => wire.encodeText({ type: "x", f: () => 1 }), TypeError);
  assert.throws(() => wire.encodeText([undefined]), TypeError);
});

// --- binary frames ---------------------------------------------------------------------------

vectorTest("it encodes every binary frame type to Python's exact bytes", () => {
  assertAll(V.binary, (vector) => {
    const frame = wire.encodeBinary(untag(vector.header), fromHex(vector.payload));
    assert.ok(frame instanceof Uint8Array);
    assertSameHex(toHex(frame), vector.frame);
  });
});

vectorTest("it decodes Python's binary frames to the same header and payload bytes", () => {
  assertAll([...V.binary, ...V.binary_decode], (vector) => {
    const got = outcome(() => {
      const { header, payload } = wire.decodeBinary(fromHex(vector.frame));
      return { header, payload: toHex(payload) };
    });
    assert.deepStrictEqual(got, expected(vector.expect));
  });
});

vectorTest("it refuses binary headers Python refuses: NaN, infinities, too many bytes", () => {
  assert.ok(V.binary_refused.length > 0);
  assertAll(V.binary_refused, (vector) => {
    const header = untag(vector.header);
    if ("ok" in vector.expect) {
      assertSameHex(toHex(wire.encodeBinary(header, Uint8Array.of(1))), vector.expect.ok);
    } else assert.throws(() => wire.encodeBinary(header, Uint8Array.of(1)), RangeError);
  });
  const chunk = { type: "chunk", upload: "u", seq: 0, crc32: 1 };
  const over = { ...chunk, pad: "x".repeat(D.MAX_HEADER_BYTES) };
  assert.throws(() => wire.encodeBinary(over), {
    name: "RangeError",
    message: `a binary frame header is limited to ${D.MAX_HEADER_BYTES} bytes`,
  });
  assert.throws(() => wire.encodeBinary({ ...chunk, loss: NaN }), RangeError);
});

vectorTest("it refuses nesting one level past its limit, which Python still reads", () => {
  const limit = V.nesting.limit;
  assert.ok(Number.isInteger(limit) && limit > 200, "the limit comes from the vectors");
  const arrays = (depth) => "[".repeat(depth) + "]".repeat(depth);
  const objects = (depth) => '{"k":'.repeat(depth - 1) + "{}" + "}".repeat(depth - 1);
  const hello = (inner) =>
    `{"type":"hello","protocol":1,"token":"t","capabilities":{"a":${inner}}}`;
  const header = (depth) => {
    const text = `{"type":"model","version":1,"seq":0,"total":1,"x":${arrays(depth - 1)}}`;
    return new TextEncoder().encode(text);
  };
  const frame = (head) => {
    const out = new Uint8Array(8 + head.length);
    out.set(wire.MAGIC, 0);
    new DataView(out.buffer).setUint32(4, head.length, false);
    out.set(head, 8);
    return out;
  };
  for (const body of [arrays, objects]) {
    assert.equal(wire.decodeText(hello(body(limit - 2))).type, "hello", body.name);
    assert.throws(() => wire.decodeText(hello(body(limit - 1))), {
      code: "bad_frame",
      message: "text frame is not valid JSON",
    });
  }
  assert.equal(wire.decodeBinary(frame(header(limit))).header.type, "model");
  assert.throws(() => wire.decodeBinary(frame(header(limit + 1))), {
    code: "bad_frame",
    message: "binary frame header is not valid JSON",
  });
});

test("it hands back the payload as a view into the frame, not a copy", () => {
  const header = { type: "model", version: 1, seq: 0, total: 1 };
  const frame = wire.encodeBinary(header, Uint8Array.of(1, 2, 3, 4, 5));
  const { payload } = wire.decodeBinary(frame);
  assert.equal(toHex(payload), "0102030405");
  assert.equal(payload.buffer, frame.buffer);
  assert.equal(payload.byteOffset + payload.byteLength, frame.byteLength);
  const fromBuffer = wire.decodeBinary(frame.buffer);
  assert.equal(fromBuffer.payload.buffer, frame.buffer);
  const inside = new Uint8Array(frame.length + 3);
  inside.set(frame, 3);
  const sub = wire.decodeBinary(inside.subarray(3));
  assert.equal(sub.payload.buffer, inside.buffer);
  assert.equal(toHex(sub.payload), toHex(payload));
});

test("it encodes a payload given as any typed array or ArrayBuffer by its bytes", () => {
  const header = { type: "chunk", upload: "u", seq: 0, crc32: 1 };
  const values = Float32Array.of(0.25, -1.5, 3);
  const expectedHex = toHex(wire.encodeBinary(header, new Uint8Array(values.buffer)));
  assert.equal(toHex(wire.encodeBinary(header, values)), expectedHex);
  assert.equal(toHex(wire.encodeBinary(header, values.buffer)), expectedHex);
  const empty = toHex(wire.encodeBinary(header, new Uint8Array()));
  assert.equal(toHex(wire.encodeBinary(header)), empty);
});

test("its errors are WireErrors carrying a code, a message and a reference", () => {
  const err = outcome(() => wire.decodeBinary(new Uint8Array(3)));
  assert.equal(err.error, "bad_frame");
  try {
    wire.decodeText("{");
    assert.fail("decodeText accepted broken JSON");
  } catch (caught) {
    assert.ok(caught instanceof wire.WireError);
    assert.ok(caught instanceof Error);
    assert.equal(caught.name, "WireError");
    assert.equal(String(caught), "WireError: bad_frame: text frame is not valid JSON");
  }
});

vectorTest("it builds error frames as Python does, leaving out an empty reference", () => {
  assertAll(V.error_frames, (vector) => {
    const [code, message, ref] = vector.args;
    const err = new wire.WireError(code, message, ref);
    assert.equal(err.code, code);
    assert.equal(err.message, message);
    assert.deepStrictEqual(err.ref, vector.ref);
    assert.deepStrictEqual(err.frame(), vector.frame);
    assert.deepStrictEqual(wire.errorMessage(code, message, ref), vector.error_message);
    assert.equal(wire.validate(err.frame()).type, "error");
  });
});

// --- checksums -------------------------------------------------------------------------------

vectorTest("it computes the same CRC-32 as zlib, as an unsigned integer", () => {
  assertAll(V.checksums, (vector) => {
    assert.equal(wire.crc32(fromHex(vector.data)), vector.crc32);
  });
  assert.equal(wire.crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

vectorTest("it computes the same SHA-256 as hashlib, in lowercase hex", async () => {
  for (const vector of V.checksums) {
    assert.equal(await wire.sha256Hex(fromHex(vector.data)), vector.sha256, vector.name);
  }
});

// --- tensors ---------------------------------------------------------------------------------

vectorTest("it encodes f32 tensors to Python's exact bytes, NaN payloads included", () => {
  const { input, output } = V.tensors.f32_encode;
  assert.equal(toHex(wire.encodeTensor(floatsFromBits(fromHex(input)), "f32")), output);
  assert.equal(toHex(wire.encodeTensor(floatsFromBits(fromHex(input)))), output);
});

vectorTest("it rounds f32 to f16 bit for bit as numpy does, ties to even", () => {
  const { input, output } = V.tensors.f16_encode;
  const floats = floatsFromBits(fromHex(input));
  const inBits = u32s(fromHex(input));
  const want = u16s(fromHex(output));
  const got = u16s(wire.encodeTensor(floats, "f16"));
  assert.equal(got.length, want.length);
  const differ = [];
  for (let i = 0; i < want.length; i++) {
    // A NaN must stay a NaN of the same sign; numpy's bits for it depend on the CPU.
    const same = isHalfNaN(want[i])
      ? isHalfNaN(got[i]) && (got[i] & 0x8000) === (want[i] & 0x8000)
      : got[i] === want[i];
    if (!same) {
      differ.push(`${hex32(inBits[i])}: got ${got[i].toString(16)}, want ${want[i].toString(16)}`);
    }
  }
  assert.deepEqual(differ.slice(0, 10), [], `${differ.length} of ${want.length} values differ`);
});

vectorTest("it decodes every f16 value to the exact f32 numpy gives", () => {
  const { input, output } = V.tensors.f16_decode;
  const halves = fromHex(input);
  const want = u32s(fromHex(output));
  const decoded = wire.decodeTensor(halves, "f16", halves.length / 2);
  assert.ok(decoded instanceof Float32Array);
  const got = Array.from(new Uint32Array(decoded.buffer));
  const differ = [];
  for (let i = 0; i < want.length; i++) {
    const same = isFloatNaN(want[i])
      ? isFloatNaN(got[i]) && got[i] >>> 31 === want[i] >>> 31
      : got[i] === want[i];
    if (!same) differ.push(`${i.toString(16)}: got ${hex32(got[i])}, want ${hex32(want[i])}`);
  }
  assert.deepEqual(differ.slice(0, 10), [], `${differ.length} of ${want.length} values differ`);
});

vectorTest("it decodes f32 tensors bit for bit into a new array", () => {
  const { input, output } = V.tensors.f32_decode;
  const bytes = fromHex(input);
  const decoded = wire.decodeTensor(bytes, "f32", bytes.length / 4);
  assert.equal(toHex(new Uint8Array(decoded.buffer)), output);
  assert.notEqual(decoded.buffer, bytes.buffer);
  const odd = new Uint8Array(bytes.length + 1);
  odd.set(bytes, 1);
  const unaligned = wire.decodeTensor(odd.subarray(1), "f32", bytes.length / 4);
  assert.equal(toHex(new Uint8Array(unaligned.buffer)), output);
});

vectorTest("it refuses unknown codecs and wrong lengths with Python's codes and messages", () => {
  assertAll(V.tensors.calls, (vector) => {
    const { op, codec, length } = vector;
    const data = fromHex(vector.data);
    const got = outcome(() => {
      if (op === "decode") {
        return toHex(new Uint8Array(wire.decodeTensor(data, codec, length).buffer));
      }
      if (op === "encode") return toHex(wire.encodeTensor(new Float32Array(length), codec));
      return wire.tensorNbytes(codec, length);
    });
    assert.deepStrictEqual(got, expected(vector.expect));
  });
});

test("it encodes other number arrays as float32 first", () => {
  const values = [0.1, -2.5, 65519.99, 1e-8];
  const asFloat32 = toHex(wire.encodeTensor(Float32Array.from(values)));
  assert.equal(toHex(wire.encodeTensor(values, "f32")), asFloat32);
  assert.equal(
    toHex(wire.encodeTensor(Float64Array.from(values), "f16")),
    toHex(wire.encodeTensor(Float32Array.from(values), "f16")),
  );
});

// --- chunks ----------------------------------------------------------------------------------

vectorTest("it splits payloads into the same chunks as Python, as views", () => {
  assertAll(V.chunks.split, (vector) => {
    const data = fromHex(vector.data);
    const chunks = [...wire.splitChunks(data, vector.chunk_size)];
    assert.deepStrictEqual(chunks.map(([seq, view]) => [seq, toHex(view)]), vector.chunks);
    assert.ok(chunks.every(([, view]) => view.buffer === data.buffer));
    assert.equal(wire.chunkCount(data.length, vector.chunk_size), vector.count);
  });
});

vectorTest("it counts chunks of large uploads exactly", () => {
  assertAll(V.chunks.counts, (vector) => {
    assert.equal(wire.chunkCount(vector.size, vector.chunk_size), vector.count);
  });
});

test("it refuses a chunk size that is not a positive integer", () => {
  for (const size of [0, -1, 1.5, NaN]) {
    assert.throws(() => wire.splitChunks(new Uint8Array(4), size), RangeError);
    assert.throws(() => wire.chunkCount(4, size), RangeError);
  }
});

/**
 * The worker wire format (docs/protocol.md) for browser workers: frames, message schemas,
 * codecs, checksums.
 *
 * The twin of ccgsc_client/wire.py: the same schemas, the same checks in the same order with
 * the same error codes and messages, and the same bytes for the same frames. Control messages
 * are JSON text frames; tensors travel in binary frames laid out as
 * `MAGIC | u32 header length (big-endian) | JSON header | payload`.
 *
 * A plain ES module without dependencies: it loads unchanged in a browser page, in a module
 * Web Worker and in Node 20. SHA-256 needs WebCrypto, which browsers offer only in secure
 * contexts (https:, or http://localhost).
 *
 * JSON follows Python's json module, which the server uses, rather than JSON.parse and
 * JSON.stringify:
 * - Numbers. In decoded text a number written without fraction or exponent (`4`) is an int
 *   and one written with either (`4.0`, `4e0`) is a float, so an int field refuses `4.0` as
 *   the server does. In values built in JavaScript a number is an int when it is an integer
 *   other than -0 (a BigInt is an int too), and is written as one: JavaScript cannot tell the
 *   float 1.0 from the int 1, so it writes `1` where Python writes `1.0`. Other numbers are
 *   written as Python's repr writes them (`0.1`, `1e-05`, `-0.0`). Integers beyond 2**53 are
 *   decoded to the nearest double.
 * - Text is written ASCII-only: other characters as `\uXXXX` escapes, as Python does.
 * - Only RFC 8259 JSON is read or written: the tokens NaN, Infinity and -Infinity are refused
 *   (bad_frame), and so is writing a NaN or an infinity (a RangeError), in text frames and
 *   binary headers alike. A float too large for a double, such as `1e400`, is refused too
 *   (bad_frame) rather than read as an infinity, as the server refuses it.
 * - Nesting deeper than 512 open arrays and objects is refused (bad_frame). Python refuses
 *   nesting that would exhaust its recursion limit, a depth that varies with the version and
 *   the caller's stack (a little under 1000 on Python 3.11); this fixed bound lies safely
 *   below it, so nothing nested deeper than Python reads is accepted here. Frames nested
 *   between 513 levels and Python's limit are read by Python and refused here; the protocol
 *   has none.
 * - Python's reader also accepts UTF-16 and UTF-32 bytes, a UTF-8 byte order mark and encoded
 *   lone surrogates in bytes; so does this one.
 * - Objects keep insertion order, except that JavaScript puts integer-like keys ("7") first;
 *   the protocol has none. A property whose value is undefined counts as absent and is not
 *   written.
 */

export const PROTOCOL_VERSION = 1;
export const MAGIC = Uint8Array.of(0x43, 0x43, 0x47, 0x31); // ASCII "CCG1"
const MAGIC_BYTES = MAGIC.slice(); // a private copy: the exported array can be written to
export const MAX_HEADER_BYTES = 4096;
const PREFIX_BYTES = 8; // the magic and the u32 header length

// Close codes (WebSocket close frames sent by the server).
export const CLOSE_BAD_TOKEN = 4401; // unknown, revoked or expired worker token
export const CLOSE_FORBIDDEN = 4403; // worker disabled
export const CLOSE_HELLO_TIMEOUT = 4408; // no hello within the allowed time
export const CLOSE_BAD_PROTOCOL = 4400; // unsupported protocol version or first frame not a hello
export const CLOSE_REPLACED = 4409; // the same worker connected again elsewhere

// Error codes carried by {"type": "error", "code": ...} frames.
export const ERROR_CODES = deepFreeze({
  bad_frame: "the frame could not be parsed",
  unknown_type: "the message type is not part of the protocol",
  bad_message: "a field is missing or has the wrong type",
  too_large: "the frame or upload exceeds the size limit",
  unknown_assignment: "no such assignment for this worker",
  wrong_round: "the assignment's round is no longer accepting work",
  wrong_shape: "the update's length does not match the model",
  wrong_dtype: "the update's codec or dtype is not accepted",
  not_finite: "the update contains NaN or Inf",
  norm_too_large: "the update's L2 norm exceeds the job's bound",
  bad_checksum: "a chunk's CRC-32 or the upload's SHA-256 does not match",
  out_of_order: "a chunk arrived before the one expected",
  incomplete: "the result arrived before every chunk of its upload",
  replayed: "this assignment already has an accepted update",
  unknown_model: "no such model version for this worker",
  bad_result: "the unit's result does not fit the unit or its kernel",
  bad_contribution: "the analytics contribution lies outside the job's bounds",
});

// Tensor codecs: bytes per value and numpy's name of the little-endian dtype.
export const CODECS = deepFreeze({
  f32: { itemsize: 4, dtype: "<f4" },
  f16: { itemsize: 2, dtype: "<f2" },
});

// Message schemas: type -> {field: [type, required]}. A type is one of Python's type names
// "int", "float", "str", "dict", "bool" (also "list"), or an array of them for "any of".
const NUM = ["int", "float"];
export const SCHEMAS = deepFreeze({
  // worker -> server
  hello: { protocol: ["int", true], token: ["str", true], capabilities: ["dict", false] },
  heartbeat: { busy: ["bool", false] },
  accept: { assignment: ["int", true] },
  decline: { assignment: ["int", true], reason: ["str", false] },
  model_request: { version: ["int", true], assignment: ["int", false] },
  upload_begin: {
    assignment: ["int", true],
    upload: ["str", true],
    size: ["int", true],
    sha256: ["str", true],
    chunk_size: ["int", true],
    codec: ["str", true],
    length: ["int", true],
  },
  result: {
    assignment: ["int", true],
    upload: ["str", true],
    num_samples: ["int", true],
    metrics: ["dict", false],
  },
  unit_result: { unit: ["int", true], result: ["dict", true], seconds: [NUM, true] },
  contribution: { contribution: ["int", true], result: ["dict", true] },
  // server -> worker
  welcome: { worker: ["int", true], protocol: ["int", true], heartbeat_s: [NUM, true] },
  pong: {},
  assign: {
    assignment: ["int", true],
    job: ["int", true],
    round: ["int", true],
    kernel: ["str", true],
    config: ["dict", true],
    model: ["dict", true],
    upload: ["dict", true],
    deadline: ["str", true],
  },
  cancel: { assignment: ["int", true], reason: ["str", false] },
  upload_ready: { upload: ["str", true], next_seq: ["int", true] },
  chunk_ack: { upload: ["str", true], seq: ["int", true] },
  result_ack: { assignment: ["int", true], status: ["str", true] },
  unit: {
    unit: ["int", true],
    job: ["int", true],
    kernel: ["str", true],
    config: ["dict", true],
    spec: ["dict", true],
    deadline: ["str", true],
  },
  unit_ack: { unit: ["int", true], status: ["str", true] },
  contribute: { contribution: ["int", true], job: ["int", true], config: ["dict", true] },
  contribution_ack: { contribution: ["int", true], status: ["str", true] },
  error: { code: ["str", true], message: ["str", true], ref: ["dict", false] },
});
export const BINARY_SCHEMAS = deepFreeze({
  chunk: { upload: ["str", true], seq: ["int", true], crc32: ["int", true] },
  model: { version: ["int", true], seq: ["int", true], total: ["int", true] },
  // A whole update that fits in one chunk: upload_begin, its chunk and result in one frame.
  update: {
    assignment: ["int", true],
    upload: ["str", true],
    sha256: ["str", true],
    codec: ["str", true],
    length: ["int", true],
    num_samples: ["int", true],
    metrics: ["dict", false],
  },
});

/** A frame that breaks the protocol; `code` is one of ERROR_CODES. */
export class WireError extends Error {
  constructor(code, message, ref = null) {
    super(`${code}: ${message}`);
    this.code = code;
    this.message = message;
    this.ref = ref || {};
  }

  /** The {"type": "error"} message that reports this error to the peer. */
  frame() {
    return errorMessage(this.code, this.message, this.ref);
  }

  toString() {
    return `${this.name}: ${this.code}: ${this.message}`;
  }
}
WireError.prototype.name = "WireError";

export function errorMessage(code, message, ref = null) {
  const msg = { type: "error", code, message };
  if (ref && Object.keys(ref).length > 0) msg.ref = ref;
  return msg;
}

// ---------------------------------------------------------------------------------------------
// Validation

const TYPE_CHECKS = new Map([
  ["int", (value, numberKind) => numberKind === "int"],
  ["float", (value, numberKind) => numberKind === "float"],
  ["str", (value) => typeof value === "string"],
  ["bool", (value) => typeof value === "boolean"],
  ["dict", (value) => isDict(value)],
  ["list", (value) => Array.isArray(value)],
]);

/** Check a decoded message against its schema; return it or throw WireError. */
export function validate(msg, schemas = SCHEMAS) {
  return validateWith(msg, schemas, null);
}

// `numberKinds` maps the top-level fields of a decoded message to "int" or "float" as the
// JSON text wrote them; without it, a number's kind follows from its value.
function validateWith(msg, schemas, numberKinds) {
  if (!isDict(msg) || !hasField(msg, "type") || typeof msg.type !== "string") {
    throw new WireError("bad_message", "a message is a JSON object with a string 'type'");
  }
  const schema = hasOwn(schemas, msg.type) ? schemas[msg.type] : null;
  if (schema === null || schema === undefined) {
    throw new WireError("unknown_type", `unknown message type ${pyRepr(msg.type)}`);
  }
  checkFields(msg.type, msg, schema, numberKinds);
  return msg;
}

function checkFields(kind, msg, schema, numberKinds) {
  for (const field of Object.keys(schema)) {
    const [types, required] = schema[field];
    if (!hasField(msg, field)) {
      if (required) throw new WireError("bad_message", `${kind}: missing field ${pyRepr(field)}`);
      continue;
    }
    const value = msg[field];
    const numberKind =
      numberKinds !== null && numberKinds.has(field) ? numberKinds.get(field) : kindOf(value);
    const names = Array.isArray(types) ? types : [types];
    // A boolean is never a number here, unlike Python's bool, which the Python module refuses
    // for a number explicitly.
    if (!names.some((name) => typeCheck(name)(value, numberKind))) {
      throw new WireError("bad_message", `${kind}: field ${pyRepr(field)} has the wrong type`);
    }
  }
}

function typeCheck(name) {
  const check = TYPE_CHECKS.get(name);
  if (check === undefined) throw new TypeError(`unknown type ${String(name)} in a schema`);
  return check;
}

// "int" or "float" for a number built in JavaScript (as encodeText would write it), else null.
function kindOf(value) {
  if (typeof value === "bigint") return "int";
  if (typeof value !== "number") return null;
  return Number.isInteger(value) && !Object.is(value, -0) ? "int" : "float";
}

function isDict(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    Object.prototype.toString.call(value) === "[object Object]"
  );
}

function hasOwn(object, key) {
  return Object.prototype.hasOwnProperty.call(object, key);
}

function hasField(msg, field) {
  return hasOwn(msg, field) && msg[field] !== undefined;
}

// Python's repr() of a string, as the Python module's messages quote names and types.
const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

function pyRepr(value) {
  if (typeof value !== "string") return String(value);
  const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of value) {
    const cp = ch.codePointAt(0);
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (cp < 0x20 || cp === 0x7f) out += "\\x" + hex(cp, 2);
    else if (cp < 0x7f) out += ch;
    else if (NOT_PRINTABLE.test(ch)) {
      if (cp <= 0xff) out += "\\x" + hex(cp, 2);
      else if (cp <= 0xffff) out += "\\u" + hex(cp, 4);
      else out += "\\U" + hex(cp, 8);
    } else out += ch;
  }
  return out + quote;
}

function hex(n, width) {
  return n.toString(16).padStart(width, "0");
}

// ---------------------------------------------------------------------------------------------
// Text frames

/** Compact JSON text of a message; NaN and infinities are refused (a RangeError). */
export function encodeText(msg) {
  return dumps(msg);
}

/** Parse and validate a text frame (a string, or bytes read as Python reads JSON bytes). */
export function decodeText(text) {
  let parsed;
  try {
    parsed = parseJson(typeof text === "string" ? text : pyDecodeBytes(asBytes(text)));
  } catch (err) {
    if (!(err instanceof JsonError)) throw err;
    throw new WireError("bad_frame", "text frame is not valid JSON");
  }
  return validateWith(parsed.value, SCHEMAS, parsed.numberKinds);
}

// ---------------------------------------------------------------------------------------------
// Binary frames

/**
 * MAGIC, the header's length (u32 big-endian), the compact JSON header, then the payload.
 * NaN and infinities in the header, and a header over MAX_HEADER_BYTES, are refused (a
 * RangeError), as Python refuses them (a ValueError).
 */
export function encodeBinary(header, payload = new Uint8Array(0)) {
  const head = dumps(header); // ASCII only, so one byte per character
  if (head.length > MAX_HEADER_BYTES) {
    throw new RangeError(`a binary frame header is limited to ${MAX_HEADER_BYTES} bytes`);
  }
  const body = asBytes(payload);
  const frame = new Uint8Array(PREFIX_BYTES + head.length + body.length);
  frame.set(MAGIC_BYTES, 0);
  new DataView(frame.buffer).setUint32(4, head.length, false);
  for (let i = 0; i < head.length; i++) frame[PREFIX_BYTES + i] = head.charCodeAt(i);
  frame.set(body, PREFIX_BYTES + head.length);
  return frame;
}

/** Split a binary frame into its validated header and a view of its payload (no copy). */
export function decodeBinary(frame) {
  const bytes = asBytes(frame);
  if (bytes.length < PREFIX_BYTES) {
    throw new WireError("bad_frame", "binary frame shorter than its prefix");
  }
  if (MAGIC_BYTES.some((byte, i) => bytes[i] !== byte)) {
    throw new WireError("bad_frame", "binary frame does not start with the protocol magic");
  }
  const headLen = new DataView(bytes.buffer, bytes.byteOffset, PREFIX_BYTES).getUint32(4, false);
  if (headLen > MAX_HEADER_BYTES || PREFIX_BYTES + headLen > bytes.length) {
    throw new WireError("bad_frame", "binary frame header length is out of range");
  }
  const end = PREFIX_BYTES + headLen;
  let parsed;
  try {
    parsed = parseJson(pyDecodeBytes(bytes.subarray(PREFIX_BYTES, end)));
  } catch (err) {
    if (!(err instanceof JsonError)) throw err;
    throw new WireError("bad_frame", "binary frame header is not valid JSON");
  }
  const header = validateWith(parsed.value, BINARY_SCHEMAS, parsed.numberKinds);
  return { header, payload: bytes.subarray(end) };
}

// ---------------------------------------------------------------------------------------------
// Checksums

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 as zlib computes it (CRC-32/ISO-HDLC), an unsigned 32-bit integer. */
export function crc32(data) {
  const bytes = asBytes(data);
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** The SHA-256 of the bytes as 64 lowercase hex digits (a Promise). */
export async function sha256Hex(data) {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) {
    throw new Error("SHA-256 needs WebCrypto (crypto.subtle), found only in secure contexts");
  }
  const digest = new Uint8Array(await subtle.digest("SHA-256", asBytes(data)));
  let out = "";
  for (const byte of digest) out += hex(byte, 2);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tensors

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function codecOf(codec) {
  if (typeof codec !== "string" || !hasOwn(CODECS, codec)) {
    throw new WireError("wrong_dtype", `unknown codec ${pyRepr(codec)}`);
  }
  return CODECS[codec];
}

/**
 * A Float32Array as little-endian bytes in the codec's dtype. f16 rounds as numpy's
 * astype(float16) does: to nearest, ties to even, with subnormals, overflow to infinity and
 * NaN kept NaN. Other array-likes are rounded to float32 first.
 */
export function encodeTensor(values, codec = "f32") {
  const { itemsize } = codecOf(codec);
  const floats = isFloat32Array(values) ? values : Float32Array.from(values);
  if (itemsize === 4) {
    // A copy of the bytes, not of the numbers: NaN payloads survive as they do in numpy.
    const out = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength).slice();
    if (!LITTLE_ENDIAN) swapBytes(out, 4);
    return out;
  }
  const bits = new Uint32Array(floats.buffer, floats.byteOffset, floats.length);
  const out = new Uint8Array(floats.length * 2);
  for (let i = 0; i < bits.length; i++) {
    const half = halfFromFloatBits(bits[i]);
    out[2 * i] = half & 0xff;
    out[2 * i + 1] = half >>> 8;
  }
  return out;
}

/** Bytes in the codec's dtype back to a new Float32Array of `length` values. */
export function decodeTensor(data, codec, length) {
  const { itemsize } = codecOf(codec);
  const bytes = asBytes(data);
  if (!Number.isInteger(length) || bytes.length !== length * itemsize) {
    throw new WireError("wrong_shape", `expected ${length} values of ${codec}`);
  }
  const out = new Float32Array(length);
  if (itemsize === 4) {
    const raw = new Uint8Array(out.buffer);
    raw.set(bytes);
    if (!LITTLE_ENDIAN) swapBytes(raw, 4);
  } else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < length; i++) {
      bits[i] = floatBitsFromHalf(bytes[2 * i] | (bytes[2 * i + 1] << 8));
    }
  }
  return out;
}

export function tensorNbytes(codec, length) {
  return codecOf(codec).itemsize * length;
}

function isFloat32Array(value) {
  return Object.prototype.toString.call(value) === "[object Float32Array]";
}

function swapBytes(bytes, width) {
  for (let i = 0; i + width <= bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

// binary32 bits to binary16 bits, as numpy's npy_floatbits_to_halfbits (ties to even).
function halfFromFloatBits(f) {
  const sign = (f >>> 16) & 0x8000;
  const exp = f & 0x7f800000;
  if (exp >= 0x47800000) {
    // Infinity, NaN, or too large: infinity.
    const sig = f & 0x007fffff;
    if (exp === 0x7f800000 && sig !== 0) {
      const nan = 0x7c00 + (sig >>> 13); // keep the top of the payload...
      return sign + (nan === 0x7c00 ? 0x7c01 : nan); // ...but stay a NaN
    }
    return sign + 0x7c00;
  }
  if (exp <= 0x38000000) {
    // Subnormal half, or zero.
    if (exp < 0x33000000) return sign;
    let sig = (0x00800000 + (f & 0x007fffff)) >>> (113 - (exp >>> 23));
    // Add half an ulp unless this is an exact tie with an even result (bits shifted out count).
    if ((sig & 0x3fff) !== 0x1000 || (f & 0x7ff) !== 0) sig += 0x1000;
    return sign + (sig >>> 13); // a carry makes the smallest normal, as it should
  }
  const hexp = (exp - 0x38000000) >>> 13;
  let sig = f & 0x007fffff;
  if ((sig & 0x3fff) !== 0x1000) sig += 0x1000;
  return sign + hexp + (sig >>> 13); // a carry bumps the exponent, up to infinity
}

// binary16 bits to binary32 bits, exactly (numpy's npy_halfbits_to_floatbits).
function floatBitsFromHalf(h) {
  const sign = (h & 0x8000) * 0x10000;
  const exp = h & 0x7c00;
  let sig = h & 0x03ff;
  if (exp === 0) {
    if (sig === 0) return sign;
    let shift = 0;
    sig <<= 1;
    while ((sig & 0x0400) === 0) {
      sig <<= 1;
      shift++;
    }
    return sign + (127 - 15 - shift) * 0x800000 + (sig & 0x03ff) * 0x2000;
  }
  if (exp === 0x7c00) return sign + 0x7f800000 + sig * 0x2000;
  return sign + ((h & 0x7fff) + 0x1c000) * 0x2000;
}

// ---------------------------------------------------------------------------------------------
// Chunks

/** [seq, chunk] pairs of views into the bytes; an empty payload yields no chunk. */
export function splitChunks(data, chunkSize) {
  const bytes = asBytes(data);
  checkChunkSize(chunkSize);
  return (function* chunks() {
    for (let seq = 0, start = 0; start < bytes.length; seq++, start += chunkSize) {
      yield [seq, bytes.subarray(start, start + chunkSize)];
    }
  })();
}

export function chunkCount(size, chunkSize) {
  checkChunkSize(chunkSize);
  return Math.ceil(size / chunkSize); // exact: a correctly rounded quotient of safe integers
}

function checkChunkSize(chunkSize) {
  if (!Number.isInteger(chunkSize) || chunkSize <= 0) {
    throw new RangeError(`the chunk size must be a positive integer, not ${chunkSize}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Bytes

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  const tag = Object.prototype.toString.call(data);
  if (tag === "[object ArrayBuffer]" || tag === "[object SharedArrayBuffer]") {
    return new Uint8Array(data);
  }
  throw new TypeError(`expected bytes (a Uint8Array, typed array or ArrayBuffer), not ${tag}`);
}

class JsonError extends Error {}

function fail() {
  throw new JsonError("not valid JSON");
}

// Bytes to text as Python's json.loads reads bytes: UTF-8, UTF-16 or UTF-32 by their byte
// order mark or their zero bytes, with encoded lone surrogates let through.
function pyDecodeBytes(b) {
  const starts = (...prefix) => b.length >= prefix.length && prefix.every((x, i) => b[i] === x);
  if (starts(0x00, 0x00, 0xfe, 0xff)) return decodeUtf32(b, 4, false);
  if (starts(0xff, 0xfe, 0x00, 0x00)) return decodeUtf32(b, 4, true);
  if (starts(0xfe, 0xff)) return decodeUtf16(b, 2, false);
  if (starts(0xff, 0xfe)) return decodeUtf16(b, 2, true);
  if (starts(0xef, 0xbb, 0xbf)) return decodeUtf8(b, 3);
  if (b.length >= 4) {
    if (!b[0]) return b[1] ? decodeUtf16(b, 0, false) : decodeUtf32(b, 0, false);
    if (!b[1]) return b[2] || b[3] ? decodeUtf16(b, 0, true) : decodeUtf32(b, 0, true);
  } else if (b.length === 2) {
    if (!b[0]) return decodeUtf16(b, 0, false);
    if (!b[1]) return decodeUtf16(b, 0, true);
  }
  return decodeUtf8(b, 0);
}

function decodeUtf8(b, start) {
  const units = [];
  for (let i = start; i < b.length; ) {
    const lead = b[i];
    if (lead < 0x80) {
      units.push(lead);
      i++;
      continue;
    }
    let need;
    let cp;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
      need = 1;
      cp = lead & 0x1f;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      need = 2;
      cp = lead & 0x0f;
      if (lead === 0xe0) low = 0xa0; // not overlong; ED A0..BF (surrogates) passes
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      need = 3;
      cp = lead & 0x07;
      if (lead === 0xf0) low = 0x90;
      if (lead === 0xf4) high = 0x8f;
    } else fail();
    for (let k = 1; k <= need; k++) {
      const next = b[i + k];
      if (next === undefined || next < (k === 1 ? low : 0x80) || next > (k === 1 ? high : 0xbf)) {
        fail();
      }
      cp = (cp << 6) | (next & 0x3f);
    }
    i += need + 1;
    if (cp > 0xffff) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    else units.push(cp);
  }
  return fromUnits(units);
}

function decodeUtf16(b, start, little) {
  if ((b.length - start) % 2 !== 0) fail();
  const units = [];
  for (let i = start; i < b.length; i += 2) {
    units.push(little ? b[i] | (b[i + 1] << 8) : (b[i] << 8) | b[i + 1]);
  }
  return fromUnits(units);
}

function decodeUtf32(b, start, little) {
  if ((b.length - start) % 4 !== 0) fail();
  const units = [];
  for (let i = start; i < b.length; i += 4) {
    const cp = little
      ? (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0
      : ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
    if (cp > 0x10ffff) fail();
    if (cp > 0xffff) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    else units.push(cp);
  }
  return fromUnits(units);
}

function fromUnits(units) {
  let out = "";
  for (let i = 0; i < units.length; i += 8192) {
    out += String.fromCharCode.apply(null, units.slice(i, i + 8192));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON, as Python's json module reads and writes it

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;
const MAX_INT_DIGITS = 4300; // Python refuses to read longer integers (sys.int_info)
// The most arrays and objects open at once; well within what Python's parser survives (see
// the notes at the top). The parser below does not recurse, so this bounds agreement, not
// the stack.
const MAX_DEPTH = 512;
const ESCAPES = new Map([
  [0x22, '"'],
  [0x5c, "\\"],
  [0x2f, "/"],
  [0x62, "\b"],
  [0x66, "\f"],
  [0x6e, "\n"],
  [0x72, "\r"],
  [0x74, "\t"],
]);

// Parse RFC 8259 JSON text, nested at most MAX_DEPTH deep, without recursion. Returns the
// value and, when it is an object, the kind ("int", "float" or null) of each of its members as
// written.
function parseJson(s) {
  const n = s.length;
  let i = 0;
  const skip = () => {
    for (let c = s.charCodeAt(i); c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d; ) {
      c = s.charCodeAt(++i);
    }
  };
  const parseString = () => {
    i++; // the opening quote
    let out = "";
    let from = i;
    for (;;) {
      if (i >= n) fail();
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        out += s.slice(from, i++);
        return out;
      }
      if (c === 0x5c) {
        out += s.slice(from, i);
        const e = s.charCodeAt(i + 1);
        if (e === 0x75) {
          const digits = s.slice(i + 2, i + 6);
          if (!HEX4.test(digits)) fail();
          out += String.fromCharCode(parseInt(digits, 16));
          i += 6;
        } else if (ESCAPES.has(e)) {
          out += ESCAPES.get(e);
          i += 2;
        } else fail();
        from = i;
        continue;
      }
      if (c < 0x20) fail();
      i++;
    }
  };
  const parseKey = () => {
    if (s.charCodeAt(i) !== 0x22) fail();
    const key = parseString();
    skip();
    if (s.charCodeAt(i) !== 0x3a) fail();
    i++;
    skip();
    return key;
  };
  const literal = (word) => {
    if (!s.startsWith(word, i)) return false;
    i += word.length;
    return true;
  };

  const stack = []; // open containers: {container, array, key}
  let numberKinds = null;
  skip();
  for (;;) {
    // A value starts at i.
    let value;
    let kind = null;
    const c = s.charCodeAt(i);
    // Python counts an empty container as a level too.
    if ((c === 0x7b || c === 0x5b) && stack.length >= MAX_DEPTH) fail();
    if (c === 0x7b) {
      i++;
      skip();
      if (s.charCodeAt(i) === 0x7d) {
        i++;
        value = {};
      } else {
        const frame = { container: {}, array: false, key: null };
        stack.push(frame);
        if (stack.length === 1) numberKinds = new Map();
        frame.key = parseKey();
        continue;
      }
    } else if (c === 0x5b) {
      i++;
      skip();
      if (s.charCodeAt(i) === 0x5d) {
        i++;
        value = [];
      } else {
        stack.push({ container: [], array: true, key: null });
        continue;
      }
    } else if (c === 0x22) value = parseString();
    else if (literal("null")) value = null;
    else if (literal("true")) value = true;
    else if (literal("false")) value = false;
    else {
      NUMBER.lastIndex = i;
      const match = NUMBER.exec(s);
      if (match === null) fail();
      const token = match[0];
      i += token.length;
      if (match[1] !== undefined || match[2] !== undefined) {
        [value, kind] = [Number(token), "float"];
        if (!Number.isFinite(value)) fail(); // too large for a double
      } else {
        if (token.length - (token[0] === "-" ? 1 : 0) > MAX_INT_DIGITS) fail();
        [value, kind] = [Number(token) + 0, "int"]; // + 0: the int -0 is 0
      }
    }
    // Store the value, then close every container that ends here.
    for (;;) {
      if (stack.length === 0) {
        skip();
        if (i !== n) fail();
        return { value, numberKinds: isDict(value) ? (numberKinds ?? new Map()) : null };
      }
      const top = stack[stack.length - 1];
      if (top.array) top.container.push(value);
      else {
        setMember(top.container, top.key, value);
        if (stack.length === 1) numberKinds.set(top.key, kind);
      }
      skip();
      const d = s.charCodeAt(i);
      if (d === 0x2c) {
        i++;
        skip();
        if (!top.array) top.key = parseKey();
        break;
      }
      if (d !== (top.array ? 0x5d : 0x7d)) fail();
      i++;
      stack.pop();
      value = top.container;
      kind = null;
    }
  }
}

function setMember(object, key, value) {
  if (key === "__proto__") {
    const member = { value, writable: true, enumerable: true, configurable: true };
    Object.defineProperty(object, key, member); // assigning would set the prototype
  } else object[key] = value;
}

// JSON text as Python's json.dumps(value, separators=(",", ":"), allow_nan=False) writes it.
function dumps(value) {
  const parts = [];
  const open = new Set();
  const write = (v) => {
    if (v === null) parts.push("null");
    else if (v === true) parts.push("true");
    else if (v === false) parts.push("false");
    else if (typeof v === "string") parts.push(quoteAscii(v));
    else if (typeof v === "number") parts.push(formatNumber(v));
    else if (typeof v === "bigint") parts.push(v.toString());
    else if (Array.isArray(v) || isDict(v)) {
      if (open.has(v)) throw new TypeError("Circular reference detected");
      open.add(v);
      if (Array.isArray(v)) {
        parts.push("[");
        for (let k = 0; k < v.length; k++) {
          if (k > 0) parts.push(",");
          if (v[k] === undefined) throw new TypeError("undefined is not JSON serializable");
          write(v[k]);
        }
        parts.push("]");
      } else {
        parts.push("{");
        let first = true;
        for (const key of Object.keys(v)) {
          if (v[key] === undefined) continue;
          if (!first) parts.push(",");
          first = false;
          parts.push(quoteAscii(key), ":");
          write(v[key]);
        }
        parts.push("}");
      }
      open.delete(v);
    } else {
      const what = typeof v === "object" ? Object.prototype.toString.call(v) : typeof v;
      throw new TypeError(`${what} is not JSON serializable`);
    }
  };
  write(value);
  return parts.join("");
}

const SHORT_ESCAPES = new Map([
  [0x22, '\\"'],
  [0x5c, "\\\\"],
  [0x08, "\\b"],
  [0x0c, "\\f"],
  [0x0a, "\\n"],
  [0x0d, "\\r"],
  [0x09, "\\t"],
]);

function quoteAscii(s) {
  let out = '"';
  let from = 0;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) continue;
    out += s.slice(from, k) + (SHORT_ESCAPES.get(c) ?? "\\u" + hex(c, 4));
    from = k + 1;
  }
  return out + s.slice(from) + '"';
}

function formatNumber(x) {
  if (!Number.isFinite(x)) {
    throw new RangeError(`Out of range float values are not JSON compliant: ${x}`);
  }
  if (Number.isInteger(x) && !Object.is(x, -0)) {
    return Number.isSafeInteger(x) ? String(x) : BigInt(x).toString(); // every digit exact
  }
  return pyFloatRepr(x);
}

// Python's repr() of a finite float: the shortest digits that read back to the same double,
// positional from 1e-4 up to 1e16, else scientific with a signed two-digit exponent.
function pyFloatRepr(x) {
  if (Object.is(x, -0)) return "-0.0";
  const [mantissa, exponent] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp = Number(exponent);
  const point = exp + 1; // digits = 0.DIGITS x 10**point
  let body;
  if (point > -4 && point <= 16) {
    if (point <= 0) body = "0." + "0".repeat(-point) + digits;
    else if (point >= digits.length) body = digits + "0".repeat(point - digits.length) + ".0";
    else body = digits.slice(0, point) + "." + digits.slice(point);
  } else {
    const rest = digits.length > 1 ? "." + digits.slice(1) : "";
    body = `${digits[0]}${rest}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  return (x < 0 ? "-" : "") + body;
}

function deepFreeze(value) {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const key of Object.keys(value)) deepFreeze(value[key]);
    Object.freeze(value);
  }
  return value;
}

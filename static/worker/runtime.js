// The browser worker's runtime: a module Web Worker that speaks the worker protocol
// (docs/protocol.md), trains with the JS kernels, runs compute units and contributes bounded
// analytics aggregates of the volunteer's data. The page's thread only shows status.
//
// Page -> runtime: {cmd: "start", server, token, cores, data?, file?, label?}, {cmd: "pause"},
//                  {cmd: "resume"}, {cmd: "leave"}
// Runtime -> page: {event: "status", state, message, ...counters}, {event: "data", ...},
//                  {event: "fatal", message}

import * as wire from "./wire.js";
import { modelCache } from "./store.js";

const KERNELS_URL = new URL("/worker/kernels/", self.location.origin);
const TRAIN_KERNELS = ["softmax", "mlp"];
const COMPUTE_KERNELS = ["primes", "montecarlo", "sweep"];
const FATAL = new Set([wire.CLOSE_BAD_TOKEN, wire.CLOSE_FORBIDDEN, wire.CLOSE_BAD_PROTOCOL,
  wire.CLOSE_REPLACED]);

const state = {
  server: "", token: "", data: null, socket: null, running: false, attempt: 0,
  heartbeat: null, current: null, pending: new Map(), waiters: new Map(), modelParts: new Map(),
  contributing: new Set(), cores: 1, slots: [], computing: new Set(),
  counters: { samples: 0, sent: 0, received: 0, job: null, round: null, contributions: 0,
    refused: 0, units: 0, parallel: 0 },
};

function post(event, extra = {}) {
  self.postMessage({ event, ...extra, counters: { ...state.counters } });
}

function status(value, message) {
  post("status", { state: value, message });
}

self.onmessage = async (event) => {
  const msg = event.data;
  try {
    if (msg.cmd === "start") await start(msg);
    else if (msg.cmd === "pause") pause();
    else if (msg.cmd === "resume") resume();
    else if (msg.cmd === "leave") leave();
  } catch (error) {
    post("fatal", { message: String(error.message || error) });
  }
};

async function start({ server, token, cores, data, file, images, label }) {
  state.server = server;
  state.token = token;
  state.cores = Math.max(1, Math.min(64, Math.floor(cores) || 1));
  if (data) state.data = toData(data);
  else if (images) state.data = await readImages(images.images, images.scaling);
  else state.data = parseCsv(await file.text(), label);
  post("data", { n: state.data.n, d: state.data.d });
  resume();
}

function toData({ X, y, n, d }) {
  return { X: Float32Array.from(X), y: Int32Array.from(y), n, d };
}

// CSV with a header row; the label column holds integer classes; every other column a number.
export function parseCsv(text, labelColumn) {
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== "");
  if (lines.length < 2) throw new Error("the file has no data rows");
  const header = lines[0].split(",").map((h) => h.trim());
  const labelAt = header.indexOf(labelColumn);
  if (labelAt < 0) throw new Error(`no column named "${labelColumn}"`);
  const n = lines.length - 1;
  const d = header.length - 1;
  const X = new Float32Array(n * d);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const cells = lines[i + 1].split(",");
    if (cells.length !== header.length) throw new Error(`line ${i + 2} has ${cells.length} fields`);
    let j = 0;
    for (let c = 0; c < cells.length; c++) {
      const value = Number(cells[c]);
      if (!Number.isFinite(value)) throw new Error(`line ${i + 2}: "${cells[c]}" is not a number`);
      if (c === labelAt) {
        if (!Number.isInteger(value) || value < 0) throw new Error(`line ${i + 2}: bad label`);
        y[i] = value;
      } else {
        X[i * d + j++] = value;
      }
    }
  }
  return { X, y, n, d };
}

// Images of digits, one subfolder per label, prepared as scikit-learn's digits were: 8×8
// pixels, ink from 0 (white) to 16 (black), then standardized with the training split's
// mean and deviation that the server publishes.
async function readImages(entries, { mean, std }) {
  const usable = entries.filter(({ path }) => /\.(png|jpe?g|gif|bmp|webp)$/i.test(path));
  if (!usable.length) throw new Error("the folder holds no images");
  const d = 64;
  const X = new Float32Array(usable.length * d);
  const y = new Int32Array(usable.length);
  const canvas = new OffscreenCanvas(8, 8);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  for (let i = 0; i < usable.length; i++) {
    const parts = usable[i].path.split("/");
    const label = Number(parts[parts.length - 2]);
    if (!Number.isInteger(label) || label < 0) {
      throw new Error(`${usable[i].path}: put each image in a folder named by its label`);
    }
    y[i] = label;
    const bitmap = await createImageBitmap(usable[i].file);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, 8, 8);
    ctx.drawImage(bitmap, 0, 0, 8, 8);
    bitmap.close();
    const px = ctx.getImageData(0, 0, 8, 8).data;
    for (let p = 0; p < d; p++) {
      const luminance = 0.299 * px[4 * p] + 0.587 * px[4 * p + 1] + 0.114 * px[4 * p + 2];
      const ink = ((255 - luminance) / 255) * 16;
      X[i * d + p] = (ink - mean[p]) / std[p];
    }
  }
  return { X, y, n: usable.length, d };
}

function resume() {
  if (state.running) return;
  state.running = true;
  connect();
}

function pause() {
  state.running = false;
  const current = state.current;
  if (current && state.socket?.readyState === WebSocket.OPEN) {
    send({ type: "decline", assignment: current, reason: "paused by the volunteer" });
  }
  state.current = null;
  state.pending.clear();
  stopSlots();
  closeSocket(1000);
  status("paused", "Paused. No work is being done.");
}

function leave() {
  pause();
  status("left", "Left. This device no longer takes part.");
}

function closeSocket(code) {
  clearInterval(state.heartbeat);
  const socket = state.socket;
  state.socket = null;
  if (socket && socket.readyState <= WebSocket.OPEN) socket.close(code);
  for (const [, waiter] of state.waiters) waiter.reject(new Error("disconnected"));
  state.waiters.clear();
}

function connect() {
  if (!state.running) return;
  status("connecting", "Connecting…");
  const socket = new WebSocket(new URL("/ws/worker/", state.server));
  socket.binaryType = "arraybuffer";
  state.socket = socket;
  socket.onopen = () => {
    send({
      type: "hello", protocol: wire.PROTOCOL_VERSION, token: state.token,
      capabilities: {
        kernels: [...TRAIN_KERNELS, ...COMPUTE_KERNELS], codecs: ["f32", "f16"],
        ...(state.data?.n > 0 ? { samples: state.data.n, n_features: state.data.d } : {}),
        runtime: "browser", model_push: false, slots: state.cores,
      },
    });
  };
  socket.onmessage = (event) => onFrame(event.data).catch((error) => {
    status("error", `Protocol error: ${error.message}`);
  });
  socket.onclose = (event) => {
    if (state.socket !== socket) return;  // a socket we closed on purpose
    clearInterval(state.heartbeat);
    state.socket = null;
    if (FATAL.has(event.code)) {
      state.running = false;
      post("fatal", { message: `The server refused this worker (code ${event.code}).` });
      return;
    }
    if (!state.running) return;
    state.attempt += 1;
    const wait = Math.random() * Math.min(30000, 500 * 2 ** Math.min(state.attempt, 16));
    status("offline", `Connection lost; retrying in ${Math.ceil(wait / 1000)} s.`);
    setTimeout(connect, wait);
  };
}

function send(msg) {
  const text = wire.encodeText(msg);
  state.socket.send(text);
  state.counters.sent += text.length;
}

function sendBinary(bytes) {
  state.socket.send(bytes);
  state.counters.sent += bytes.byteLength;
}

async function onFrame(frame) {
  if (typeof frame !== "string") return onModelChunk(new Uint8Array(frame));
  state.counters.received += frame.length;
  const msg = wire.decodeText(frame);
  switch (msg.type) {
    case "welcome":
      state.attempt = 0;
      state.heartbeat = setInterval(() => send({ type: "heartbeat" }), msg.heartbeat_s * 1000);
      status("connected", "Connected. Waiting for work.");
      for (const pending of state.pending.values()) upload(pending).catch(report);
      return;
    case "assign":
      if (state.current === msg.assignment || state.pending.has(msg.assignment)) return;
      return work(msg).catch(report);
    case "unit":
      if (state.computing.has(msg.unit)) return;  // sent again after a reconnect
      return compute(msg).catch(report);
    case "unit_ack":
      return resolveWaiter(`unit:${msg.unit}`, msg);
    case "contribute":
      if (state.contributing.has(msg.contribution)) return;
      return contribute(msg);
    case "contribution_ack":
      return resolveWaiter(`contribution:${msg.contribution}`, msg);
    case "cancel":
      if (state.current === msg.assignment) state.current = null;
      return resolveWaiter(`assignment:${msg.assignment}`, msg);
    case "upload_ready": case "chunk_ack":
      return resolveWaiter(`upload:${msg.upload}`, msg);
    case "result_ack":
      return resolveWaiter(`assignment:${msg.assignment}`, msg);
    case "error": {
      const ref = msg.ref || {};
      for (const key of [`upload:${ref.upload}`, `assignment:${ref.assignment}`,
        `model:${ref.version}`, `unit:${ref.unit}`, `contribution:${ref.contribution}`]) {
        resolveWaiter(key, msg);
      }
      return;
    }
    default:
  }
}

function onModelChunk(bytes) {
  state.counters.received += bytes.byteLength;
  const { header, payload } = wire.decodeBinary(bytes);
  const parts = state.modelParts.get(header.version) || [];
  parts[header.seq] = payload.slice();
  state.modelParts.set(header.version, parts);
  if (parts.filter(Boolean).length === header.total) {
    state.modelParts.delete(header.version);
    const size = parts.reduce((sum, part) => sum + part.byteLength, 0);
    const whole = new Uint8Array(size);
    let offset = 0;
    for (const part of parts) { whole.set(part, offset); offset += part.byteLength; }
    resolveWaiter(`model:${header.version}`, whole);
  }
}

// One queue of frames per key (an upload, an assignment, a model), read in order.
function waiterFor(key) {
  let waiter = state.waiters.get(key);
  if (!waiter) {
    waiter = { items: [], next: null, reject: () => {} };
    state.waiters.set(key, waiter);
  }
  return waiter;
}

function resolveWaiter(key, item) {
  const waiter = state.waiters.get(key);
  if (!waiter) return;
  if (waiter.next) { const next = waiter.next; waiter.next = null; next(item); }
  else waiter.items.push(item);
}

function expect(key, type, timeoutMs = 120000) {
  const waiter = waiterFor(key);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} in time`)), timeoutMs);
    const take = (item) => {
      clearTimeout(timer);
      if (item && item.type === "error") reject(new Error(item.code));
      else if (item && item.type === "cancel") reject(new Error("cancelled"));
      else if (type && item.type !== type && !(item instanceof Uint8Array)) {
        reject(new Error(`expected ${type}, got ${item.type}`));
      } else resolve(item);
    };
    waiter.reject = (error) => { clearTimeout(timer); reject(error); };
    if (waiter.items.length) take(waiter.items.shift());
    else waiter.next = take;
  });
}

function report(error) {
  if (state.running) status("connected", `Last assignment ended: ${error.message}`);
}

async function work(assign) {
  const id = assign.assignment;
  state.current = id;
  state.counters.job = assign.job;
  state.counters.round = assign.round;
  waiterFor(`assignment:${id}`);
  try {
    if (assign.config.n_features !== state.data.d) {
      send({ type: "decline", assignment: id, reason: "my data has a different shape" });
      return;
    }
    send({ type: "accept", assignment: id });
    const weights = await fetchModel(assign.model, id);
    status("training", `Training round ${assign.round} of job ${assign.job}…`);
    const kernel = await import(new URL(`${assign.kernel}.js`, KERNELS_URL));
    const { weights: trained, metrics } = kernel.train(weights, state.data, assign.config);
    if (state.current !== id) return;  // paused or cancelled while training
    const update = clip(subtract(trained, weights), assign.upload.max_norm);
    state.counters.samples += state.data.n * (assign.config.epochs || 1);
    const pending = {
      assignment: id, upload: randomId(), data: wire.encodeTensor(update, assign.upload.codec),
      codec: assign.upload.codec, length: update.length, chunkSize: assign.upload.chunk_size,
      numSamples: state.data.n,
      metrics: finiteMetrics(metrics),
    };
    state.pending.set(id, pending);
    await upload(pending);
  } finally {
    if (state.current === id) state.current = null;
    state.waiters.delete(`assignment:${id}`);
  }
}

// A compute work unit (docs/protocol.md §16): run the kernel's JS twin on the unit's range in
// a free slot (unit_runner.js, one module Web Worker per core the volunteer gave) and send the
// result; replicas on other workers (Python or browser) must agree with it. The server sends
// at most as many units at once as the slots this worker announced.
async function compute(msg) {
  const key = `unit:${msg.unit}`;
  state.computing.add(msg.unit);
  waiterFor(key);
  try {
    status("computing", `Computing units of job ${msg.job}…`);
    const { result, seconds } = await runInSlot(msg);
    if (!state.socket) return;  // paused or offline: the server takes the unit back
    send({ type: "unit_result", unit: msg.unit, result, seconds });
    await expect(key, "unit_ack");
    state.counters.units += 1;
    if (state.computing.size === 1) status("connected", "Unit accepted. Waiting for work.");
  } finally {
    state.waiters.delete(key);
    state.computing.delete(msg.unit);
  }
}

// Pause stops the units being computed: their Web Workers are terminated (Chromium ends a
// worker busy in a loop within about two seconds) and the server takes the units back, or
// sends them again if this worker resumes in time.
function stopSlots() {
  for (const slot of state.slots) {
    slot.worker.terminate();
    slot.reject?.(new Error("paused"));
  }
  state.slots = [];
}

function runInSlot(msg) {
  let slot = state.slots.find((s) => !s.busy);
  if (!slot) {
    slot = { worker: new Worker(new URL("unit_runner.js", import.meta.url), { type: "module" }) };
    state.slots.push(slot);
  }
  slot.busy = true;
  const busy = state.slots.filter((s) => s.busy).length;
  state.counters.parallel = Math.max(state.counters.parallel, busy);
  return new Promise((resolve, reject) => {
    slot.reject = reject;
    slot.worker.onmessage = ({ data }) => {
      slot.busy = false;
      slot.reject = null;
      if (data.error) reject(new Error(data.error));
      else resolve(data);
    };
    slot.worker.onerror = (event) => {
      slot.busy = false;
      slot.reject = null;
      reject(new Error(event.message || "the compute slot failed"));
    };
    const { unit: id, kernel, spec, config } = msg;
    slot.worker.postMessage({ id, kernel, spec, config });
  });
}

// An analytics contribution (docs/protocol.md §17): the bounded aggregates of one column of the
// volunteer's rows (kernels/analytics.js, the twin of the server's check). Only these numbers
// are sent; the rows stay here. A paused worker has no socket, so it is not asked.
async function contribute(msg) {
  if (!state.running || !state.data) return;
  const id = msg.contribution;
  const key = `contribution:${id}`;
  state.contributing.add(id);
  waiterFor(key);
  try {
    status("contributing", `Computing a contribution to job ${msg.job}…`);
    const kernel = await import(new URL("analytics.js", KERNELS_URL));
    const result = kernel.local(state.data, msg.config);
    if (!state.running) return;  // paused while the kernel loaded
    send({ type: "contribution", contribution: id, result });
    const ack = await expect(key, "contribution_ack");
    if (ack.status === "accepted") state.counters.contributions += 1;
    status("connected", ack.status === "accepted"
      ? `Contribution to job ${msg.job} accepted. Waiting for work.`
      : `Job ${msg.job} ended before the contribution arrived. Waiting for work.`);
  } catch (error) {
    const refused = Object.hasOwn(wire.ERROR_CODES, error.message);
    if (refused) state.counters.refused += 1;
    if (state.running) {
      status("connected", refused
        ? `The server refused the contribution to job ${msg.job} (${error.message}).`
        : `No contribution to job ${msg.job}: ${error.message}`);
    }
  } finally {
    state.waiters.delete(key);
    state.contributing.delete(id);
  }
}

async function fetchModel(ref, assignment) {
  let bytes = await modelCache.get(ref.sha256);
  if (!bytes) {
    const key = `model:${ref.version}`;
    waiterFor(key);
    if (!ref.push) send({ type: "model_request", version: ref.version, assignment });
    try {
      bytes = await expect(key, null);
    } finally {
      state.waiters.delete(key);
    }
    if (await wire.sha256Hex(bytes) !== ref.sha256) throw new Error("model hash mismatch");
    await modelCache.put(ref.sha256, bytes);
  }
  return wire.decodeTensor(bytes, "f32", ref.length);
}

async function upload(p) {
  status("uploading", "Sending the model update…");
  const sha256 = await wire.sha256Hex(p.data);
  if (p.data.byteLength <= p.chunkSize) {
    sendBinary(wire.encodeBinary({
      type: "update", assignment: p.assignment, upload: p.upload, sha256, codec: p.codec,
      length: p.length, num_samples: p.numSamples, metrics: p.metrics,
    }, p.data));
  } else {
    await uploadChunked(p, sha256);
  }
  waiterFor(`assignment:${p.assignment}`);
  try {
    await expect(`assignment:${p.assignment}`, "result_ack");
  } finally {
    state.pending.delete(p.assignment);
  }
  status("connected", "Update accepted. Waiting for the next round.");
}

async function uploadChunked(p, sha256) {
  const key = `upload:${p.upload}`;
  waiterFor(key);
  try {
    send({ type: "upload_begin", assignment: p.assignment, upload: p.upload,
      size: p.data.byteLength, sha256, chunk_size: p.chunkSize, codec: p.codec,
      length: p.length });
    const ready = await expect(key, "upload_ready");
    let sent = 0;
    for (const [seq, chunk] of wire.splitChunks(p.data, p.chunkSize)) {
      if (seq < ready.next_seq) continue;
      sendBinary(wire.encodeBinary({ type: "chunk", upload: p.upload, seq,
        crc32: wire.crc32(chunk) }, chunk));
      sent += 1;
    }
    for (let i = 0; i < sent; i++) await expect(key, "chunk_ack");
    send({ type: "result", assignment: p.assignment, upload: p.upload,
      num_samples: p.numSamples, metrics: p.metrics });
  } finally {
    state.waiters.delete(key);
  }
}

// Loss and accuracy as JSON allows them: a diverged, non-finite value is left out.
function finiteMetrics(metrics) {
  const out = {};
  for (const key of ["loss", "accuracy"]) {
    if (Number.isFinite(metrics[key])) out[key] = metrics[key];
  }
  return out;
}

function subtract(a, b) {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i];
  return out;
}

// Scale the update down to the job's L2 bound (a little under, so f16 rounding stays inside).
function clip(update, maxNorm) {
  if (maxNorm == null) return update;
  let sum = 0;
  for (let i = 0; i < update.length; i++) sum += update[i] * update[i];
  const norm = Math.sqrt(sum);
  if (norm <= maxNorm) return update;
  const scale = (maxNorm * (1 - 1e-3)) / norm;
  return update.map((v) => v * scale);
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

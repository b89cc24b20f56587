// The volunteer page: consent, Join / Pause / Leave, the volunteer's conditions, and a live
// view of what the runtime (a Web Worker) is doing. No training, computing or contributing
// happens on this thread.

const app = document.getElementById("app");
const $ = (id) => document.getElementById(id);
const STORE_KEY = "ccgsc.worker";
const USAGE_KEY = "ccgsc.usage";

const saved = () => JSON.parse(localStorage.getItem(STORE_KEY) || "null");
const save = (value) => localStorage.setItem(STORE_KEY, JSON.stringify(value));

let runtime = null;
let lastSent = 0;
let dataLabel = "";

function say(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function setButtons(joined, paused) {
  $("join").disabled = joined;
  $("pause").disabled = !joined;
  $("leave").disabled = !joined;
  $("pause").textContent = paused ? "Resume" : "Pause";
}

function todayUsage() {
  const usage = JSON.parse(localStorage.getItem(USAGE_KEY) || "{}");
  const day = new Date().toISOString().slice(0, 10);
  return usage.day === day ? usage : { day, bytes: 0 };
}

function addUsage(delta) {
  const usage = todayUsage();
  usage.bytes += delta;
  localStorage.setItem(USAGE_KEY, JSON.stringify(usage));
  return usage.bytes;
}

async function conditionsBlock(options) {
  if (options.wifi_only && navigator.connection && navigator.connection.type
      && !["wifi", "ethernet"].includes(navigator.connection.type)) {
    return "Waiting for Wi-Fi.";
  }
  if (options.charging_only && navigator.getBattery) {
    const battery = await navigator.getBattery();
    if (!battery.charging) return "Waiting for the charger.";
  }
  if (todayUsage().bytes >= options.daily_mb * 1024 * 1024) return "Today's data limit is used.";
  return null;
}

function readOptions(form) {
  const data = new FormData(form);
  return {
    source: data.get("source"), label: data.get("label") || "label",
    wifi_only: data.get("wifi_only") === "on", charging_only: data.get("charging_only") === "on",
    daily_mb: Number(data.get("daily_mb")) || 50, cores: Number(data.get("cores")) || 1,
  };
}

async function enroll(options) {
  const response = await fetch("/api/v1/workers/enroll/", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      enrollment_key: app.dataset.enrollmentKey, kind: "browser", name: "volunteer",
      consent_version: app.dataset.consentVersion,
      capabilities: { runtime: "browser", cores: options.cores },
    }),
  });
  if (!response.ok) throw new Error(`enrollment refused (${response.status})`);
  const body = await response.json();
  const record = { worker: body.worker, token: body.token, options, joined: true };
  save(record);
  return record;
}

async function demoData(token) {
  const response = await fetch("/api/v1/workers/demo-data/?dataset=digits", {
    headers: { Authorization: `Worker ${token}` },
  });
  if (!response.ok) throw new Error(`no demo data (${response.status})`);
  return response.json();
}

async function featureScaling(token) {
  const response = await fetch("/api/v1/workers/feature-scaling/?dataset=digits", {
    headers: { Authorization: `Worker ${token}` },
  });
  if (!response.ok) throw new Error(`no feature scaling (${response.status})`);
  return response.json();
}

function startRuntime(record, data, file, images = null) {
  runtime = new Worker(app.dataset.runtime, { type: "module" });
  runtime.onmessage = (event) => onRuntime(event.data, record);
  const server = location.origin.replace(/^http/, "ws");
  runtime.postMessage({ cmd: "start", server, token: record.token, data, file, images,
    label: record.options.label, cores: record.options.cores });
}

function onRuntime(msg, record) {
  const c = msg.counters;
  if (c) {
    $("stat-round").textContent = c.job ? `job ${c.job}, round ${c.round}` : "–";
    $("stat-samples").textContent = String(c.samples);
    $("stat-contributions").textContent = c.refused
      ? `${c.contributions} accepted, ${c.refused} refused` : String(c.contributions);
    $("stat-units").textContent = c.units
      ? `${c.units} (at most ${c.parallel} at once)` : String(c.units);
    $("stat-sent").textContent = bytes(c.sent);
    $("stat-received").textContent = bytes(c.received);
    const used = addUsage(c.sent + c.received - lastSent);
    lastSent = c.sent + c.received;
    if (used >= record.options.daily_mb * 1024 * 1024 && msg.state !== "paused") {
      pause("Today's data limit is used. Paused.");
    }
  }
  if (msg.event === "status") say(msg.state, msg.message);
  else if (msg.event === "data") {
    const source = dataLabel || "from your file, kept on this device";
    $("stat-data").textContent = `${msg.n} examples, ${msg.d} features (${source})`;
  }
  else if (msg.event === "fatal") { say("error", msg.message); setButtons(false, false); }
}

async function join(record, fileInput) {
  const options = record.options;
  const blocked = await conditionsBlock(options);
  if (blocked) { say("waiting", blocked); setTimeout(() => join(record, fileInput), 30000); return; }
  $("stat-worker").textContent = `#${record.worker}`;
  if (options.source === "demo") {
    say("loading", "Loading the demo data the server assigned…");
    const data = await demoData(record.token);
    dataLabel = `demo data: ${data.dataset} shard ${data.shard}, not yours`;
    $("stat-data").textContent = dataLabel;
    startRuntime(record, data, null);
  } else if (options.source === "images") {
    const files = Array.from($("data-folder").files);
    if (!files.length) { say("waiting", "Choose your folder of images to rejoin."); return; }
    dataLabel = "your images, kept on this device";
    const scaling = await featureScaling(record.token);
    // Decoded and scaled inside the Web Worker; never uploaded.
    startRuntime(record, null, null, { scaling,
      images: files.map((file) => ({ file, path: file.webkitRelativePath || file.name })) });
  } else {
    const file = fileInput.files[0];
    if (!file) { say("waiting", "Choose your CSV file to rejoin."); return; }
    dataLabel = "";
    startRuntime(record, null, file);  // parsed inside the Web Worker; never uploaded
  }
  setButtons(true, false);
}

// Pause stops work at once: the runtime declines its assignment when it can answer; if it is
// busy in a training step, it is terminated (the server then drops the assignment itself).
function pause(text) {
  const record = saved();
  if (record) save({ ...record, joined: false });
  setButtons(true, true);
  if (text) say("paused", text);
  const current = runtime;
  if (!current) return;
  const stopped = setTimeout(() => {
    current.terminate();
    if (runtime === current) runtime = null;
  }, 300);
  current.addEventListener("message", (event) => {
    if (event.data.state === "paused") clearTimeout(stopped);
  });
  current.postMessage({ cmd: "pause" });
}

function resume() {
  const record = { ...saved(), joined: true };
  save(record);
  if (runtime) {
    runtime.postMessage({ cmd: "resume" });
    setButtons(true, false);
  } else {
    join(record, $("data-file")).catch((error) => say("error", String(error.message || error)));
  }
}

function leave() {
  runtime?.postMessage({ cmd: "leave" });
  runtime?.terminate();
  runtime = null;
  localStorage.removeItem(STORE_KEY);
  setButtons(false, false);
  $("stat-worker").textContent = "–";
  say("left", "You left. This device no longer takes part; its worker token is forgotten.");
}

function init() {
  const cores = $("cores");
  const most = Math.max(1, navigator.hardwareConcurrency || 1);
  for (let i = 1; i <= most; i++) cores.add(new Option(String(i), String(i), i === 1, i === 1));
  const form = $("join-form");
  const record = saved();
  if (!app.dataset.enrollmentKey && !record) {
    $("no-link").hidden = false;
    $("join").disabled = true;
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!$("consent").checked) { say("waiting", "Please read and agree first."); return; }
    try {
      const options = readOptions(form);
      const current = saved() || await enroll(options);
      await join({ ...current, options, joined: true }, $("data-file"));
    } catch (error) {
      say("error", String(error.message || error));
    }
  });
  $("pause").addEventListener("click", () => {
    if ($("pause").textContent === "Pause") pause("Paused. No work is being done.");
    else resume();
  });
  $("leave").addEventListener("click", leave);
  if (record && record.joined) {  // a reload rejoins as the same worker
    $("consent").checked = true;
    join(record, $("data-file")).catch((error) => say("error", String(error.message || error)));
  } else if (record) {
    $("stat-worker").textContent = `#${record.worker}`;
    say("paused", "Paused. Press Join to continue as the same worker.");
    $("consent").checked = true;
  }
}

init();

// Director live refresh: a job.changed event on /ws/director/ re-fetches this page and swaps its
// <main>; if the socket fails or closes, the page polls every 5 s and retries the socket with
// backoff. The pure helpers are exported so that they can be tested without a browser.

const MIN_GAP_MS = 1000; // at most one refresh per second
const POLL_MS = 5000;
const RETRY_MAX_MS = 60000;
const RETRY_MIN_MS = 2000;

/** The WebSocket URL for a page location: ws: beside http:, wss: beside https:. */
export function socketUrl(loc) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/ws/director/`;
}

/** Whether an event concerns this page: any job on "any" pages, one job on a job page. */
export function isRelevant(message, scope) {
  if (!message || message.type !== "job.changed") return false;
  if (scope.mode === "any") return true;
  return scope.mode === "job" && String(message.job) === String(scope.job);
}

/**
 * Run `task` at most once per `gapMs`: calls that arrive sooner are folded into one trailing
 * run, and a call made while the task is running schedules exactly one more run after it.
 */
export function throttle(task, gapMs, now = () => Date.now()) {
  let last = -Infinity;
  let timer = null;
  let running = false;
  let again = false;
  async function run() {
    timer = null;
    running = true;
    last = now();
    try {
      await task();
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  }
  function schedule() {
    if (running) {
      again = true;
      return;
    }
    if (timer !== null) return;
    timer = setTimeout(run, Math.max(0, last + gapMs - now()));
  }
  return schedule;
}

/** Re-fetch this page; returns its new <main>, or a word for why there is none. */
async function fetchMain() {
  let response;
  try {
    response = await fetch(location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" },
    });
  } catch {
    return { problem: "offline" };
  }
  if (new URL(response.url).pathname !== location.pathname) return { problem: "signed out" };
  if (!response.ok) return { problem: `error ${response.status}` };
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  const main = doc.querySelector("main");
  return main ? { main, title: doc.title } : { problem: "error" };
}

/** Replace the content of <main>, keeping open sections and how far wide tables are scrolled. */
function swapMain(main, next) {
  const open = new Map([...main.querySelectorAll("details[id]")].map((d) => [d.id, d.open]));
  const scrolled = [...main.querySelectorAll(".table-wrap")].map((t) => t.scrollLeft);
  main.innerHTML = next.innerHTML;
  for (const [id, isOpen] of open) {
    const details = document.getElementById(id);
    if (details) details.open = isOpen;
  }
  main.querySelectorAll(".table-wrap").forEach((t, i) => {
    t.scrollLeft = scrolled[i] || 0;
  });
}

function start() {
  const main = document.querySelector("main[data-live]");
  const indicator = document.getElementById("live-status");
  if (!main || !("fetch" in window)) return;
  const scope = { mode: main.dataset.live, job: main.dataset.job };
  const state = { mode: "connecting", stopped: false, pending: false, opened: false };
  let pollTimer = null;
  let retryMs = RETRY_MIN_MS;

  const show = (mode, text = mode) => {
    if (!indicator) return;
    indicator.dataset.state = mode;
    indicator.textContent = text;
  };
  const setMode = (mode) => {
    state.mode = mode;
    show(mode, mode === "connecting" ? "connecting…" : mode);
  };

  async function reload() {
    if (state.stopped) return;
    if (document.hidden) {
      state.pending = true; // catch up when the tab is shown again
      return;
    }
    const result = await fetchMain();
    if (result.problem) {
      show("offline", result.problem);
      if (result.problem === "signed out") stop();
      return;
    }
    swapMain(main, result.main);
    if (result.title) document.title = result.title;
    setMode(state.mode); // clear an earlier "offline" once a fetch works again
  }
  const refresh = throttle(reload, MIN_GAP_MS);

  const startPolling = () => {
    setMode("polling");
    if (pollTimer === null) pollTimer = setInterval(refresh, POLL_MS);
  };
  const stopPolling = () => {
    if (pollTimer !== null) clearInterval(pollTimer);
    pollTimer = null;
  };
  let socket = null;
  function stop() {
    state.stopped = true;
    stopPolling();
    if (socket) socket.close();
  }

  function connect() {
    if (state.stopped) return;
    let current;
    try {
      current = socket = new WebSocket(socketUrl(location));
    } catch {
      startPolling();
      return;
    }
    let lost = false;
    // Browsers fire "error" then "close" when a socket fails, some other clients only one of
    // them; handle whichever comes first, once. A refused handshake (no longer staff) ends here
    // too: the polling fetch then finds the login page and stops everything.
    const onLost = () => {
      if (lost || state.stopped) return;
      lost = true;
      startPolling();
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    };
    current.addEventListener("open", () => {
      retryMs = RETRY_MIN_MS;
      stopPolling();
      setMode("live");
      if (state.opened) refresh(); // a reconnect: catch up on what happened while it was down
      state.opened = true;
    });
    current.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (isRelevant(message, scope)) refresh();
    });
    current.addEventListener("error", onLost);
    current.addEventListener("close", onLost);
  }

  // Pages whose data also changes without a job event (workers connecting) poll slowly too.
  const extraPollS = Number(main.dataset.poll || 0);
  if (extraPollS > 0) setInterval(refresh, extraPollS * 1000);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.pending) {
      state.pending = false;
      refresh();
    }
  });
  setMode("connecting");
  if ("WebSocket" in window) connect();
  else startPolling();
}

if (typeof document !== "undefined") start();

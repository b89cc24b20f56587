"""Memory and CPU of one Daphne process holding N authenticated, idle worker sockets.

Starts the real stack as separate processes (tests/stack.py: Postgres, Redis channel layer,
Daphne through scripts/serve.sh, a Celery worker), enrolls N workers over REST (a small thread
pool, timed on its own), then opens N WebSockets from a few client processes (asyncio and the
`websockets` library, at most --concurrency handshakes in flight), each sending the hello and
waiting for its welcome. It prints Daphne's resident memory with 0 and with N workers connected
and the increment per connection (next to the target: under 400 MB with 1,000 workers),
connects+hellos per second and Daphne CPU per connect, how many were welcomed, how many the
REST API shows connected right away and after an idle hold (the clients heartbeat as a worker
does), and whether they all close cleanly. Never fails on time or memory.

    python bench/connections.py [--workers 1000] [--hold 10] [--clients 2] [--concurrency 100]

Run as `python bench/connections.py client URL TOKENS` it is one of the client processes: it
answers commands on stdin (go, status, close) with JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import psutil
import requests
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccgsc_client import wire  # noqa: E402
from tests.stack import Stack  # noqa: E402

TARGET_MB = 400  # the project's target: the server under 400 MB with 1,000 workers connected
TARGET_WORKERS = 1000
MAX_SIZE = 16 * 2**20
SETTLE_S = 2.0  # let the server finish the work a phase started before reading its memory
MB = 2**20


# client process ---------------------------------------------------------------------------------
class Fleet:
    """N idle worker sockets in one event loop: hello, welcome, a heartbeat now and then."""

    def __init__(self, url: str, tokens: list[str], concurrency: int) -> None:
        self.url, self.tokens, self.concurrency = url, tokens, concurrency
        self.sockets: list[Any] = []
        self.holders: list[asyncio.Task] = []
        self.failures: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.dropped: Counter[str] = Counter()  # close codes of sockets the server closed
        self.pongs = self.other_frames = 0
        self.closing = False

    def _fail(self, reason: str, exc: BaseException | str) -> None:
        self.failures[reason] += 1
        self.examples.setdefault(reason, str(exc)[:200])

    async def connect_all(self) -> dict:
        started, cpu = time.perf_counter(), time.process_time()
        gate = asyncio.Semaphore(self.concurrency)
        await asyncio.gather(*(self._connect(token, gate) for token in self.tokens))
        return {
            "event": "connected",
            "welcomed": len(self.sockets),
            "failures": dict(self.failures),
            "examples": self.examples,
            "seconds": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu,
        }

    async def _connect(self, token: str, gate: asyncio.Semaphore) -> None:
        hello = {
            "type": "hello",
            "protocol": wire.PROTOCOL_VERSION,
            "token": token,
            "capabilities": {"kind": "bench", "samples_per_s": 1000.0},
        }
        async with gate:
            try:
                ws = await websockets.connect(self.url, max_size=MAX_SIZE, proxy=None)
            except websockets.InvalidStatus as exc:
                self._fail(f"handshake HTTP {exc.response.status_code}", exc)
                return
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self._fail(f"connect {type(exc).__name__}", exc)
                return
            try:
                await ws.send(wire.encode_text(hello))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else "without a close frame"
                self._fail(f"closed {code} before welcome", exc)
                return
            except (OSError, TimeoutError) as exc:
                self._fail(f"hello {type(exc).__name__}", exc)
                await ws.close()
                return
            if reply.get("type") != "welcome":
                self._fail(f"answered {reply.get('type')!r}", json.dumps(reply))
                await ws.close()
                return
        self.sockets.append(ws)
        self.holders.append(asyncio.create_task(self._hold(ws, float(reply["heartbeat_s"]))))

    async def _hold(self, ws: Any, heartbeat_s: float) -> None:
        beat = asyncio.create_task(self._heartbeats(ws, heartbeat_s))
        try:
            async for frame in ws:
                kind = json.loads(frame).get("type") if isinstance(frame, str) else "binary"
                if kind == "pong":
                    self.pongs += 1
                else:
                    self.other_frames += 1
        except websockets.ConnectionClosed:
            pass
        finally:
            beat.cancel()
        if not self.closing:
            self.dropped[str(ws.close_code)] += 1

    async def _heartbeats(self, ws: Any, heartbeat_s: float) -> None:
        # Spread the first beat so the fleet does not beat in step, then beat like a worker.
        await asyncio.sleep(random.uniform(0, heartbeat_s))
        while True:
            await ws.send(wire.encode_text({"type": "heartbeat"}))
            await asyncio.sleep(heartbeat_s)

    def status(self) -> dict:
        is_open = sum(ws.close_code is None for ws in self.sockets)
        return {
            "event": "status",
            "open": is_open,
            "dropped": dict(self.dropped),
            "pongs": self.pongs,
            "other_frames": self.other_frames,
        }

    async def close_all(self) -> dict:
        self.closing = True
        before = self.status()
        started = time.perf_counter()
        gate = asyncio.Semaphore(self.concurrency)

        async def close(ws: Any) -> None:
            async with gate:
                await ws.close()

        await asyncio.gather(*(close(ws) for ws in self.sockets), return_exceptions=True)
        await asyncio.gather(*self.holders, return_exceptions=True)
        codes = Counter(str(ws.close_code) for ws in self.sockets)
        return {
            **before,
            "event": "closed",
            "seconds": time.perf_counter() - started,
            "codes": dict(codes),
        }


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft open-file limit toward ``wanted``; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def emit(msg: dict) -> None:
    print(json.dumps(msg), flush=True)


async def client_main(args: argparse.Namespace) -> None:
    tokens = Path(args.tokens).read_text().split()
    fleet = Fleet(args.url, tokens, args.concurrency)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    emit({"event": "ready", "tokens": len(tokens), "nofile": raise_open_files(len(tokens) + 256)})
    deadline = time.monotonic() + args.lifetime
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = (await asyncio.wait_for(commands.readline(), left)).decode().strip()
            except TimeoutError:
                break
            if line == "go":
                emit(await fleet.connect_all())
            elif line == "status":
                emit(fleet.status())
            else:  # "close", or end of input when the parent went away
                break
    finally:
        emit(await fleet.close_all())


# parent process ---------------------------------------------------------------------------------
class ClientProc:
    """One client process and the JSON lines it prints, read by a thread into a queue."""

    def __init__(self, stack: Stack, url: str, tokens: Path, concurrency: int, life: float):
        self.log = tokens.with_suffix(".log")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "client",
                url,
                str(tokens),
                "--concurrency",
                str(concurrency),
                "--lifetime",
                str(life),
            ],
            env=stack.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
            start_new_session=True,
        )
        stack.workers.append(self.proc)  # so stack.stop() ends it if we cannot
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(json.loads(line))

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float) -> dict:
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(
                f"client sent no {event!r} in {timeout:.0f} s: {self.tail()}"
            ) from None
        if msg["event"] != event:
            raise RuntimeError(f"client sent {msg['event']!r}, expected {event!r}")
        return msg

    def tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""


def enroll_all(stack: Stack, n: int, threads: int) -> tuple[list[str], float, int, float]:
    """Enroll n workers, one request each; honour 429 answers. (tokens, s, 429s, s waited)."""
    local = threading.local()
    lock = threading.Lock()
    throttled, waited = [0], [0.0]

    def one(i: int) -> str:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.trust_env = False  # 127.0.0.1 only, never through a proxy
        for _ in range(60):
            response = local.session.post(
                f"{stack.base_url}/api/v1/workers/enroll/",
                json={"enrollment_key": stack.enrollment_key, "name": f"conn-{i}"},
                timeout=30,
            )
            if response.status_code != 429:
                response.raise_for_status()
                return response.json()["token"]
            pause = min(float(response.headers.get("Retry-After", 1)), 30.0)
            with lock:
                throttled[0] += 1
                waited[0] += pause
            time.sleep(pause)
        raise RuntimeError(f"enrollment {i} still throttled after 60 attempts")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        tokens = list(pool.map(one, range(n)))
    return tokens, time.perf_counter() - started, throttled[0], waited[0]


def connected_count(stack: Stack) -> tuple[int, int]:
    """(connected, enrolled) workers as the REST API lists them."""
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"Token {stack.token}"
    connected = total = offset = 0
    limit, pages = 500, 0
    while pages < 1000:
        response = session.get(
            f"{stack.base_url}/api/v1/workers/",
            params={"limit": limit, "offset": offset},
            timeout=60,
        )
        response.raise_for_status()
        page = response.json()
        connected += sum(bool(w["connected"]) for w in page["results"])
        total += len(page["results"])
        offset, pages = offset + limit, pages + 1
        if not page["next"]:
            break
    return connected, total


def channel_layer(stack: Stack) -> str:
    """The channel layer backend the server runs with, as its settings resolve it."""
    code = "from django.conf import settings; print(settings.CHANNEL_LAYERS['default']['BACKEND'])"
    return stack.manage("shell", "-c", code).strip().rsplit(".", 1)[-1]


def wait_offline(stack: Stack, since: float, limit: float) -> float | None:
    """Seconds from ``since`` until the REST API lists no worker connected; None past limit."""
    while connected_count(stack)[0]:
        if time.perf_counter() - since > limit:
            return None
        time.sleep(0.2)
    return time.perf_counter() - since


def rss(proc: psutil.Process) -> int:
    return proc.memory_info().rss


def tree_pss(pid: int) -> int:
    """Proportional set size of a process tree: pages shared after fork counted once."""
    try:
        root = psutil.Process(pid)
        return sum(p.memory_full_info().pss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


class RssRange(threading.Thread):
    """Samples a process's resident memory every 0.1 s until stopped."""

    def __init__(self, proc: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.proc, self.low, self.high = proc, 2**63, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            try:
                value = rss(self.proc)
            except psutil.Error:
                return
            self.low, self.high = min(self.low, value), max(self.high, value)


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        layer = {"CCGSC_CHANNEL_LAYER": args.channel_layer} if args.channel_layer else {}
        stack = Stack(tmp, **layer)
        clients: list[ClientProc] = []
        try:
            stack.start()
            return run_phases(stack, tmp, clients, args)
        except Exception:
            # The temporary folder goes with the stack: show why the server failed first.
            print("end of the Daphne log:\n" + stack.log("daphne"), file=sys.stderr)
            raise
        finally:
            for client in clients:
                if client.proc.poll() is None:
                    try:
                        client.send("close")
                        client.proc.wait(30)
                    except (OSError, subprocess.TimeoutExpired):
                        pass
            stack.stop()


def run_phases(
    stack: Stack, tmp: Path, clients: list[ClientProc], args: argparse.Namespace
) -> dict:
    n = args.workers
    daphne = psutil.Process(stack.daphne.pid)
    r: dict[str, Any] = {"n": n, "layer": channel_layer(stack)}
    time.sleep(SETTLE_S)
    r["rss_start"] = rss(daphne)

    tokens, r["enroll_s"], r["throttled"], r["waited"] = enroll_all(stack, n, args.enroll_threads)
    time.sleep(SETTLE_S)
    r["rss_enrolled"] = rss(daphne)

    per = -(-n // args.clients)
    per_gate = max(1, -(-args.concurrency // args.clients))
    url = f"{stack.ws_url}/ws/worker/"
    life = 300 + args.hold + n / 10  # a client never outlives a stuck parent for long
    for c in range(args.clients):
        part = tokens[c * per : (c + 1) * per]
        if part:
            path = tmp / f"tokens-{c}.txt"
            path.write_text("\n".join(part))
            clients.append(ClientProc(stack, url, path, per_gate, life))
    r["nofile"] = min(client.expect("ready", 60)["nofile"] for client in clients)

    cpu_before = cpu_s(daphne)
    started = time.perf_counter()
    for client in clients:
        client.send("go")
    reports = [client.expect("connected", 120 + n / 10) for client in clients]
    r["connect_s"] = time.perf_counter() - started
    r["connect_cpu"] = cpu_s(daphne) - cpu_before
    r["welcomed"] = sum(rep["welcomed"] for rep in reports)
    r["client_cpu"] = sum(rep["cpu_s"] for rep in reports)
    r["failures"], r["examples"] = Counter(), {}
    for rep in reports:
        r["failures"].update(rep["failures"])
        r["examples"].update(rep["examples"])

    time.sleep(SETTLE_S)
    r["rss_connected"] = rss(daphne)
    r["celery_pss"] = tree_pss(stack.celery.pid)
    r["rest_after_connect"] = connected_count(stack)

    sampler = RssRange(daphne)
    sampler.start()
    cpu_before = cpu_s(daphne)
    time.sleep(args.hold)
    r["hold_cpu"] = cpu_s(daphne) - cpu_before
    sampler.stopped.set()
    sampler.join()
    r["rss_hold"] = (sampler.low, sampler.high)
    statuses = []
    for client in clients:
        client.send("status")
        statuses.append(client.expect("status", 30))
    r["open_after_hold"] = sum(s["open"] for s in statuses)
    r["pongs"] = sum(s["pongs"] for s in statuses)
    r["dropped"] = Counter()
    for s in statuses:
        r["dropped"].update(s["dropped"])
    r["rest_after_hold"] = connected_count(stack)

    started = time.perf_counter()
    for client in clients:
        client.send("close")
    closes = [client.expect("closed", 60 + n / 20) for client in clients]
    r["close_s"] = time.perf_counter() - started
    r["close_codes"] = Counter()
    for rep in closes:
        r["close_codes"].update(rep["codes"])
        r["dropped"].update(rep["dropped"])
    for client in clients:
        client.proc.wait(30)
    r["rest_after_close"] = connected_count(stack)
    r["offline_s"] = wait_offline(stack, started, limit=30.0)
    time.sleep(SETTLE_S)
    r["rss_closed"] = rss(daphne)
    if r["failures"] or r["dropped"]:
        r["daphne_log"] = stack.log("daphne")
    return r


def report(r: dict, args: argparse.Namespace) -> None:
    n = r["n"]
    per_kb = (r["rss_connected"] - r["rss_enrolled"]) / max(r["welcomed"], 1) / 1024
    at_target = (r["rss_enrolled"] + per_kb * 1024 * TARGET_WORKERS) / MB
    connected_mb = r["rss_connected"] / MB
    verdict = "within" if connected_mb < TARGET_MB else "OVER"
    failures = ", ".join(f"{k}: {v}" for k, v in r["failures"].most_common()) or "none"

    print(
        f"{n} authenticated idle workers on one Daphne process (Postgres, channel layer "
        f"{r['layer']}); {args.clients} client processes, at most {args.concurrency} "
        f"handshakes in flight, client open-file limit {r['nofile']}"
    )
    print(
        f"enrollment over REST ({args.enroll_threads} threads, one request each): {n} workers in "
        f"{r['enroll_s']:.1f} s ({n / r['enroll_s']:.0f}/s); {r['throttled']} requests answered "
        f"429 by the enroll throttle, {r['waited']:.0f} s of Retry-After slept across threads"
    )
    print()
    print(f"{'Daphne resident memory':<48} {'MB':>8}")
    print(f"{'  after start-up, 0 workers':<48} {r['rss_start'] / MB:>8.1f}")
    print(f"{'  after enrollment, 0 workers':<48} {r['rss_enrolled'] / MB:>8.1f}")
    label = f"  {r['welcomed']} workers connected, idle"
    print(
        f"{label:<48} {connected_mb:>8.1f}  "
        f"target < {TARGET_MB} MB with {TARGET_WORKERS:,} workers: {verdict}"
    )
    low, high = r["rss_hold"]
    label = f"  during the {args.hold:g} s hold (min-max)"
    print(f"{label:<48} {low / MB:>8.1f}-{high / MB:.1f}")
    print(f"{'  after the clients closed':<48} {r['rss_closed'] / MB:>8.1f}")
    print(f"{'per connection (connected - after enrollment)':<48} {per_kb:>8.1f} KB")
    if n != TARGET_WORKERS:
        label = f"  so at {TARGET_WORKERS:,} workers about"
        print(f"{label:<48} {at_target:>8.1f}")
    print(f"{'Celery worker, beat and pool (PSS, not Daphne)':<48} {r['celery_pss'] / MB:>8.1f}")
    print()
    rate = r["welcomed"] / r["connect_s"] if r["connect_s"] else 0.0
    per_ms = 1000 * r["connect_cpu"] / max(r["welcomed"], 1)
    print(f"{'connect + hello + welcome':<48} {r['welcomed']} of {n} welcomed")
    print(f"{'  failures':<48} {failures}")
    for reason, example in r["examples"].items():
        print(f"{'':<50}{reason}: {example}")
    print(f"{'  wall time, rate':<48} {r['connect_s']:.2f} s, {rate:.0f} connects/s")
    print(
        f"{'  Daphne CPU per connect':<48} {per_ms:.2f} ms ({r['connect_cpu']:.2f} s in all; "
        f"clients used {r['client_cpu']:.2f} s)"
    )
    print(f"{'  Daphne CPU while idle':<48} {r['hold_cpu']:.2f} s over the {args.hold:g} s hold")
    print()
    print(f"{'connected as the REST API lists them':<48} connected / enrolled")
    print(f"{'  right after the connects':<48} {r['rest_after_connect'][0]} / {n}")
    label = f"  after the {args.hold:g} s idle hold"
    print(
        f"{label:<48} {r['rest_after_hold'][0]} / {n}  "
        f"(client sockets still open: {r['open_after_hold']}, pongs to heartbeats: {r['pongs']})"
    )
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(r["close_codes"].items()))
    print(
        f"{'  as soon as the clients closed':<48} {r['rest_after_close'][0]} / {n}  "
        f"(clients closed in {r['close_s']:.2f} s; close codes {codes})"
    )
    offline = "not within 30 s" if r["offline_s"] is None else f"{r['offline_s']:.2f} s"
    print(f"{'  0 connected, counted from the close':<48} {offline}")
    dropped = ", ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "none"
    print(f"{'sockets the server closed on its own':<48} {dropped}")
    if r.get("daphne_log"):
        print("\nend of the Daphne log:\n" + r["daphne_log"])


def main() -> None:
    if sys.argv[1:2] == ["client"]:
        parser = argparse.ArgumentParser(description="one client process (internal)")
        parser.add_argument("mode", choices=["client"])
        parser.add_argument("url")
        parser.add_argument("tokens", help="a file with one worker token per line")
        parser.add_argument("--concurrency", type=int, default=50)
        parser.add_argument("--lifetime", type=float, default=600, help="seconds, at most")
        asyncio.run(client_main(parser.parse_args()))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=10, help="idle seconds after connecting")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight")
    parser.add_argument("--enroll-threads", type=int, default=8)
    parser.add_argument(
        "--channel-layer",
        choices=["pubsub", "core"],
        help="set CCGSC_CHANNEL_LAYER for the server (default: the server's own default)",
    )
    args = parser.parse_args()
    report(measure(args), args)


if __name__ == "__main__":
    main()

"""The headless Python worker: trains on local data, contributes bounded aggregates of it to
analytics jobs, and runs compute units (no Django).

Run ``python -m ccgsc_client.worker --server ws://host:8000 --token T --dataset digits
--shard 3/10`` to train on a simulation shard, ``--data file.csv --label-column y`` for
private data, or with neither to run compute jobs only. The protocol is docs/protocol.md;
frames come from ccgsc_client.wire.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import secrets
import time
from dataclasses import dataclass, field

import numpy as np
import websockets

import kernels
from ccgsc_client import wire
from kernels import analytics
from kernels.compute import get_compute_kernel, list_compute_kernels

log = logging.getLogger("ccgsc.worker")
MAX_FRAME = 16 * 1024 * 1024


class Rejected(Exception):
    """The server refused a step of an assignment (an error frame or a cancel)."""


class ProtocolClosed(Exception):
    """The server closed the socket with a code that retrying will not fix."""


FATAL_CLOSE = {
    wire.CLOSE_BAD_TOKEN,
    wire.CLOSE_FORBIDDEN,
    wire.CLOSE_BAD_PROTOCOL,
    wire.CLOSE_REPLACED,
}


@dataclass
class PendingResult:
    """A trained update not yet acknowledged: kept across reconnects so the upload resumes."""

    assignment: int
    upload: str
    data: bytes
    codec: str
    length: int
    chunk_size: int
    num_samples: int
    metrics: dict


@dataclass
class Stats:
    assignments: int = 0
    accepted: int = 0
    errors: list = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0


class Worker:
    """One worker connection with reconnects; ``run`` returns when ``stop`` is set."""

    def __init__(
        self,
        server: str,
        token: str,
        X: np.ndarray | None = None,
        y: np.ndarray | None = None,
        *,
        name: str = "",
        delay_s: float = 0.0,
        max_backoff_s: float = 30.0,
        faulty_compute: bool = False,
        cpu_limit: float = 100.0,
        slots: int = 1,
    ) -> None:
        if not 0 < cpu_limit <= 100:
            raise ValueError("cpu_limit is a percentage in (0, 100]")
        if not 1 <= slots <= 64:
            raise ValueError("slots is a number of units in [1, 64]")
        self.url = server.rstrip("/") + "/ws/worker/"
        self.token, self.name = token, name
        self.X, self.y = X, y
        self.delay_s, self.max_backoff_s = delay_s, max_backoff_s
        self.models: dict[str, np.ndarray] = {}  # by sha256
        self.pending: dict[int, PendingResult] = {}
        self.stats = Stats()
        self.samples_per_s: float | None = None
        self.unit_results: dict[int, dict] = {}  # unit id -> unit_result not yet acknowledged
        self.faulty_compute = faulty_compute  # a test fault injector: see `wrong`
        self.cpu_limit = cpu_limit  # percent of the time spent computing units
        self.slots = slots  # compute units run at once, each in its own thread

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        attempt = 0
        while not stop.is_set():
            try:
                async with websockets.connect(self.url, max_size=MAX_FRAME) as ws:
                    attempt = 0
                    await self._session(ws, stop)
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if code in FATAL_CLOSE:
                    raise ProtocolClosed(f"server closed the connection with code {code}") from exc
            except (TimeoutError, OSError, websockets.InvalidHandshake) as exc:
                log.info("connection failed: %s", exc)
            if stop.is_set():
                break
            attempt += 1
            await _sleep_or_stop(stop, _backoff(attempt, self.max_backoff_s))

    async def _session(self, ws, stop: asyncio.Event) -> None:
        session = _Session(self, ws)
        await session.hello()
        await session.serve(stop)

    def capabilities(self) -> dict:
        compute = [k.name for k in list_compute_kernels()]
        caps = {"codecs": list(wire.CODECS), "runtime": "python", "slots": self.slots}
        if self.X is None or self.y is None:
            return {"kernels": compute, **caps}
        caps |= {
            "kernels": [k.name for k in kernels.list_kernels()] + compute,
            "samples": int(len(self.y)),
            "n_features": int(self.X.shape[1]),
        }
        if self.samples_per_s:
            caps["samples_per_s"] = self.samples_per_s
        return caps

    def train(self, assign: dict, weights: np.ndarray) -> tuple[np.ndarray, dict]:
        """Local training (runs in a thread); returns the update (a delta) and metrics."""
        kernel = kernels.get_kernel(assign["kernel"])
        start = time.perf_counter()
        trained, metrics = kernel.train(weights, self.X, self.y, assign["config"])
        elapsed = time.perf_counter() - start
        epochs = assign["config"].get("epochs", 1)
        self.samples_per_s = len(self.y) * epochs / max(elapsed, 1e-9)
        if self.delay_s:
            time.sleep(self.delay_s)
        return trained - weights, metrics

    def compute(self, unit: dict) -> dict:
        """Run one compute unit (in a thread); returns its unit_result message.

        Under a ``cpu_limit`` below 100 % the worker rests after the unit so that computing
        takes that share of its time; the time it reports includes the rest, since that is
        how long a unit takes this worker (and what the server sizes its next units from).
        """
        kernel = get_compute_kernel(unit["kernel"])
        start = time.perf_counter()
        result = kernel.run(unit["spec"], kernel.resolve_config(unit["config"]))
        busy = time.perf_counter() - start
        time.sleep(busy * (100.0 / self.cpu_limit - 1.0))
        seconds = time.perf_counter() - start
        if self.faulty_compute:
            result = wrong(result, kernel.exact_fields)
        return {"type": "unit_result", "unit": unit["unit"], "result": result, "seconds": seconds}

    def contribute(self, request: dict) -> dict:
        """This worker's bounded aggregates of its own rows for an analytics job (in a thread);
        the config comes resolved from the server. Returns the contribution message."""
        result = analytics.local(self.X, request["config"])
        return {"type": "contribution", "contribution": request["contribution"], "result": result}


class _Session:
    """One connected socket: a reader that routes frames, and a task per assignment."""

    def __init__(self, worker: Worker, ws) -> None:
        self.worker, self.ws = worker, ws
        self.inbox: dict[object, asyncio.Queue] = {}
        self.model_parts: dict[int, dict[int, bytes]] = {}
        self.arrived: dict[int, bytes] = {}  # a pushed model not yet claimed
        self.working: set[int] = set()  # assignments being trained in this session
        self.computing: set[int] = set()  # units being run in this session
        self.contributing: set[int] = set()  # analytics contributions being sent
        self.upload_of: dict[str, int] = {}  # upload id -> assignment, for routing errors
        self.heartbeat_s = 15.0
        self.tasks: set[asyncio.Task] = set()

    async def send(self, msg: dict) -> None:
        await self.ws.send(wire.encode_text(msg))

    async def hello(self) -> None:
        await self.send(
            {
                "type": "hello",
                "protocol": wire.PROTOCOL_VERSION,
                "token": self.worker.token,
                "capabilities": self.worker.capabilities(),
            }
        )
        welcome = wire.decode_text(await asyncio.wait_for(self.ws.recv(), 30))
        if welcome["type"] != "welcome":
            raise Rejected(f"expected welcome, got {welcome}")
        self.heartbeat_s = float(welcome["heartbeat_s"])

    async def serve(self, stop: asyncio.Event) -> None:
        for pending in list(self.worker.pending.values()):
            self._spawn(self.resume(pending))
        beat = asyncio.create_task(self.heartbeats())
        stopper = asyncio.create_task(stop.wait())
        reader = asyncio.create_task(self.read())
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # re-raise ConnectionClosed for the reconnect loop
        finally:
            for task in (beat, stopper, reader, *self.tasks):
                task.cancel()

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await self.send({"type": "heartbeat"})

    async def read(self) -> None:
        async for frame in self.ws:
            if isinstance(frame, bytes):
                self.on_binary(frame)
            else:
                self.on_text(wire.decode_text(frame))

    def on_text(self, msg: dict) -> None:
        kind = msg["type"]
        if kind == "assign":
            if msg["assignment"] in self.worker.pending or msg["assignment"] in self.working:
                return  # offered again after a reconnect: already trained or training
            self.worker.stats.assignments += 1
            self._spawn(self.work(msg))
        elif kind in ("upload_ready", "chunk_ack"):
            self._deliver(("upload", msg["upload"]), msg)
        elif kind in ("result_ack", "cancel"):
            self._deliver(("assignment", msg["assignment"]), msg)
        elif kind == "unit":
            if msg["unit"] not in self.computing:  # offered again after a reconnect otherwise
                self._spawn(self.run_unit(msg))
        elif kind == "unit_ack":
            self._deliver(("unit", msg["unit"]), msg)
        elif kind == "contribute":
            if msg["contribution"] not in self.contributing and self.worker.X is not None:
                self._spawn(self.send_contribution(msg))
        elif kind == "contribution_ack":
            self._deliver(("contribution", msg["contribution"]), msg)
        elif kind == "error":
            self.worker.stats.errors.append(msg["code"])
            ref = msg.get("ref", {})
            uploads = [u for u, a in self.upload_of.items() if a == ref.get("assignment")]
            keys = {("upload", u) for u in [ref.get("upload"), *uploads]}
            keys |= {("assignment", ref.get("assignment")), ("model", ref.get("version"))}
            keys.add(("unit", ref.get("unit")))
            keys.add(("contribution", ref.get("contribution")))
            for key in keys:
                self._deliver(key, msg)
            log.warning("server error %s: %s", msg["code"], msg["message"])

    def on_binary(self, frame: bytes) -> None:
        header, payload = wire.decode_binary(frame)
        parts = self.model_parts.setdefault(header["version"], {})
        parts[header["seq"]] = bytes(payload)
        if len(parts) == header["total"]:
            data = b"".join(parts[i] for i in range(header["total"]))
            del self.model_parts[header["version"]]
            key = ("model", header["version"])
            if key in self.inbox:
                self._deliver(key, data)
            else:  # pushed with its assign frame, before anyone asked
                self.arrived = {header["version"]: data}

    def _deliver(self, key: object, item: object) -> None:
        queue = self.inbox.get(key)
        if queue is not None:
            queue.put_nowait(item)

    async def _expect(self, key: object, kind: str | None, timeout: float = 120.0):
        """The next item routed to ``key``; an error or cancel frame raises Rejected."""
        item = await asyncio.wait_for(self.inbox[key].get(), timeout)
        if isinstance(item, dict) and item["type"] in ("error", "cancel"):
            raise Rejected(item.get("code", "cancelled"))
        if kind is not None and item["type"] != kind:
            raise Rejected(f"expected {kind}, got {item['type']}")
        return item

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, Rejected | websockets.ConnectionClosed):
                log.error("assignment failed: %r", exc)

    async def run_unit(self, unit: dict) -> None:
        """Compute a unit (or resend a result computed before a reconnect), wait for its ack."""
        unit_id = unit["unit"]
        key = ("unit", unit_id)
        self.inbox[key] = asyncio.Queue()
        self.computing.add(unit_id)
        try:
            msg = self.worker.unit_results.get(unit_id)
            if msg is None:
                msg = await asyncio.to_thread(self.worker.compute, unit)
                self.worker.unit_results[unit_id] = msg
            await self.send(msg)
            try:
                await self._expect(key, "unit_ack")
            except Rejected:  # the server will not take it: forget it
                self.worker.unit_results.pop(unit_id, None)
                raise
            self.worker.unit_results.pop(unit_id, None)
            self.worker.stats.accepted += 1
        finally:
            self.inbox.pop(key, None)
            self.computing.discard(unit_id)

    async def send_contribution(self, request: dict) -> None:
        """Compute this worker's contribution to an analytics job and wait for its ack."""
        contribution_id = request["contribution"]
        key = ("contribution", contribution_id)
        self.inbox[key] = asyncio.Queue()
        self.contributing.add(contribution_id)
        try:
            msg = await asyncio.to_thread(self.worker.contribute, request)
            await self.send(msg)
            await self._expect(key, "contribution_ack")
            self.worker.stats.accepted += 1
        finally:
            self.inbox.pop(key, None)
            self.contributing.discard(contribution_id)

    async def work(self, assign: dict) -> None:
        assignment = assign["assignment"]
        self.inbox[("assignment", assignment)] = asyncio.Queue()
        self.working.add(assignment)
        try:
            features = None if self.worker.X is None else self.worker.X.shape[1]
            if assign["config"].get("n_features") != features:
                await self.send(
                    {
                        "type": "decline",
                        "assignment": assignment,
                        "reason": "my data has a different number of features",
                    }
                )
                return
            await self.send({"type": "accept", "assignment": assignment})
            try:
                weights = await self.model(assign["model"], assignment)
            except Rejected:
                await self.send(
                    {
                        "type": "decline",
                        "assignment": assignment,
                        "reason": "the model could not be fetched",
                    }
                )
                raise
            update, metrics = await asyncio.to_thread(self.worker.train, assign, weights)
            if self._cancelled(assignment):
                return
            spec = assign["upload"]
            update = clip(update, spec.get("max_norm"))
            pending = PendingResult(
                assignment=assignment,
                upload=secrets.token_urlsafe(12),
                data=wire.encode_tensor(update, spec["codec"]),
                codec=spec["codec"],
                length=int(update.size),
                chunk_size=spec["chunk_size"],
                num_samples=int(len(self.worker.y)),
                metrics=finite_metrics(metrics),
            )
            self.worker.pending[assignment] = pending
            await self.upload(pending)
        finally:
            self.inbox.pop(("assignment", assignment), None)
            self.working.discard(assignment)

    def _cancelled(self, assignment: int) -> bool:
        """Whether a cancel for the assignment arrived (while it was training)."""
        queue = self.inbox[("assignment", assignment)]
        items = [queue.get_nowait() for _ in range(queue.qsize())]
        return any(item.get("type") == "cancel" for item in items if isinstance(item, dict))

    async def resume(self, pending: PendingResult) -> None:
        self.inbox[("assignment", pending.assignment)] = asyncio.Queue()
        try:
            await self.upload(pending)
        finally:
            self.inbox.pop(("assignment", pending.assignment), None)

    async def model(self, ref: dict, assignment: int) -> np.ndarray:
        cached = self.worker.models.get(ref["sha256"])
        if cached is not None:
            return cached
        data = self.arrived.pop(ref["version"], None)
        if data is None:
            data = await self._fetch_model(ref, assignment)
        if isinstance(data, dict):
            raise Rejected(data.get("code", "model"))
        if wire.sha256_hex(data) != ref["sha256"]:
            raise Rejected("model hash mismatch")
        weights = wire.decode_tensor(data, "f32", ref["length"])
        self.worker.stats.bytes_down += len(data)
        self.worker.models = {ref["sha256"]: weights}  # keep only the newest model
        return weights

    async def _fetch_model(self, ref: dict, assignment: int) -> bytes | dict:
        """Wait for a pushed model, or ask for it; an error frame comes back as a dict."""
        key = ("model", ref["version"])
        self.inbox[key] = asyncio.Queue()
        try:
            if not ref.get("push"):
                await self.send(
                    {"type": "model_request", "version": ref["version"], "assignment": assignment}
                )
            return await asyncio.wait_for(self.inbox[key].get(), 120)
        finally:
            self.inbox.pop(key, None)

    async def upload(self, p: PendingResult) -> None:
        """Send the update: one frame when it fits a chunk, else a resumable chunked upload."""
        self.upload_of[p.upload] = p.assignment
        if len(p.data) <= p.chunk_size:
            header = {
                "type": "update",
                "assignment": p.assignment,
                "upload": p.upload,
                "sha256": wire.sha256_hex(p.data),
                "codec": p.codec,
                "length": p.length,
                "num_samples": p.num_samples,
                "metrics": p.metrics,
            }
            await self.ws.send(wire.encode_binary(header, p.data))
            await self._finished(p)
        else:
            await self.upload_chunked(p)

    async def _finished(self, p: PendingResult) -> None:
        try:
            await self._expect(("assignment", p.assignment), "result_ack")
        except Rejected:
            self.worker.pending.pop(p.assignment, None)
            raise
        self.worker.stats.accepted += 1
        self.worker.stats.bytes_up += len(p.data)
        self.worker.pending.pop(p.assignment, None)

    async def upload_chunked(self, p: PendingResult) -> None:
        """Begin (or resume) the upload, send the missing chunks, then the result."""
        key = ("upload", p.upload)
        self.inbox[key] = asyncio.Queue()
        try:
            await self.send(
                {
                    "type": "upload_begin",
                    "assignment": p.assignment,
                    "upload": p.upload,
                    "size": len(p.data),
                    "sha256": wire.sha256_hex(p.data),
                    "chunk_size": p.chunk_size,
                    "codec": p.codec,
                    "length": p.length,
                }
            )
            ready = await self._expect(key, "upload_ready")
            chunks = list(wire.split_chunks(p.data, p.chunk_size))[ready["next_seq"] :]
            for seq, chunk in chunks:
                header = {
                    "type": "chunk",
                    "upload": p.upload,
                    "seq": seq,
                    "crc32": wire.crc32(chunk),
                }
                await self.ws.send(wire.encode_binary(header, chunk))
            for _ in chunks:
                await self._expect(key, "chunk_ack")
            await self.send(
                {
                    "type": "result",
                    "assignment": p.assignment,
                    "upload": p.upload,
                    "num_samples": p.num_samples,
                    "metrics": p.metrics,
                }
            )
        except Rejected:
            self.worker.pending.pop(p.assignment, None)
            raise
        finally:
            self.inbox.pop(key, None)
        await self._finished(p)


def wrong(result: dict, exact_fields: tuple[str, ...]) -> dict:
    """A test fault injector: the result with every exact integer field off by one, so that a
    server validating replicas must outvote it. Never used outside tests."""
    return {k: v + 1 if k in exact_fields and isinstance(v, int) else v for k, v in result.items()}


def finite_metrics(metrics: dict) -> dict:
    """Loss and accuracy as JSON allows them: a diverged, non-finite value is left out."""
    return {k: float(metrics[k]) for k in ("loss", "accuracy") if np.isfinite(metrics[k])}


def clip(update: np.ndarray, max_norm: float | None) -> np.ndarray:
    """Scale the update down to the job's L2 bound, if it has one and the update exceeds it."""
    if max_norm is None:
        return update
    norm = float(np.linalg.norm(update.astype(np.float64)))
    # A little under the bound, so f16 or f32 rounding cannot push it over on the server.
    return update * np.float32(max_norm * (1 - 1e-3) / norm) if norm > max_norm else update


def _backoff(attempt: int, cap: float) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, 0.5 * 2 ** min(attempt, 16)))


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def load_data(args: argparse.Namespace) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The worker's training data; none when it only runs compute jobs."""
    if not (args.data or args.dataset):
        return None, None
    if args.data:
        return kernels.load_csv(args.data, args.label_column)
    index, count = (int(part) for part in args.shard.split("/"))
    return kernels.load_shard(args.dataset, index, count, args.partition, args.seed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ccgsc_client.worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--server", required=True, help="ws:// or wss:// address of the server")
    parser.add_argument("--token", required=True, help="this worker's token (from enroll)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", help="simulation: a bundled dataset, e.g. digits")
    source.add_argument("--data", help="a CSV file of private data with a header row")
    parser.add_argument("--label-column", default="label", help="CSV column with class labels")
    parser.add_argument("--shard", default="0/1", help="simulation shard INDEX/COUNT (0-based)")
    parser.add_argument("--partition", default="iid", help="iid, dirichlet:ALPHA or natural")
    parser.add_argument("--seed", type=int, default=0, help="partition seed")
    parser.add_argument("--name", default="", help="a name shown in the Director")
    parser.add_argument("--delay", type=float, default=0.0, help="extra seconds per round")
    parser.add_argument(
        "--cpu-limit",
        type=float,
        default=100.0,
        help="percent of the time to spend computing units (rests in between), default 100",
    )
    parser.add_argument(
        "--slots", type=int, default=1, help="compute units to run at once (threads), default 1"
    )
    # A test fault injector (hidden from --help): return wrong compute results, off by one in
    # every exact field, to exercise the server's replica validation.
    parser.add_argument("--faulty-compute", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    X, y = load_data(args)
    worker = Worker(
        args.server,
        args.token,
        X,
        y,
        name=args.name,
        delay_s=args.delay,
        faulty_compute=args.faulty_compute,
        cpu_limit=args.cpu_limit,
        slots=args.slots,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(worker.run())


if __name__ == "__main__":
    main()

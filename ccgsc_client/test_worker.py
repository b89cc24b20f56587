"""The Python worker against a scripted server: data loading, training, resume after a drop."""

from __future__ import annotations

import asyncio
import csv

import numpy as np
import websockets

from ccgsc_client import wire
from ccgsc_client.worker import Worker, _backoff, load_data, parse_args
from kernels import get_kernel, load_shard

CONFIG = get_kernel("softmax").resolve_config({"dataset": "iris", "epochs": 1})


def test_it_loads_a_simulation_shard_from_its_arguments() -> None:
    args = parse_args(
        [
            "--server",
            "ws://x",
            "--token",
            "t",
            "--dataset",
            "iris",
            "--shard",
            "1/3",
            "--partition",
            "dirichlet:1.0",
        ]
    )
    X, y = load_data(args)
    expected_X, _ = load_shard("iris", 1, 3, "dirichlet:1.0", 0)
    np.testing.assert_array_equal(X, expected_X)


def test_it_loads_private_data_from_a_csv(tmp_path) -> None:
    path = tmp_path / "site.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "diagnosis"])
        writer.writerows([[0.5, 1.5, 1], [2.0, -1.0, 0]])
    args = parse_args(
        ["--server", "ws://x", "--token", "t", "--data", str(path), "--label-column", "diagnosis"]
    )
    X, y = load_data(args)
    assert X.tolist() == [[0.5, 1.5], [2.0, -1.0]] and y.tolist() == [1, 0]


def test_backoff_grows_and_stays_under_its_cap() -> None:
    waits = [max(_backoff(attempt, 30.0) for _ in range(200)) for attempt in (1, 3, 10)]
    assert waits[0] <= 1.0 < waits[1] <= 4.0 < waits[2] <= 30.0


def assign_frame(model: np.ndarray) -> dict:
    data = wire.encode_tensor(model)
    return {
        "type": "assign",
        "assignment": 11,
        "job": 1,
        "round": 1,
        "kernel": "softmax",
        "config": CONFIG,
        "deadline": "2030-01-01T00:00:00+00:00",
        "model": {
            "version": 5,
            "sha256": wire.sha256_hex(data),
            "length": model.size,
            "size": len(data),
            "push": True,
        },
        "upload": {"codec": "f32", "chunk_size": 1 << 20},
    }


async def test_it_trains_uploads_and_resends_its_update_after_a_dropped_connection() -> None:
    X, y = load_shard("iris", 0, 2)
    model = get_kernel("softmax").init(CONFIG)
    seen: list[dict] = []
    stop = asyncio.Event()

    async def server(ws) -> None:
        hello = wire.decode_text(await ws.recv())
        assert hello["type"] == "hello" and hello["token"] == "secret"
        await ws.send(
            wire.encode_text({"type": "welcome", "worker": 1, "protocol": 1, "heartbeat_s": 5})
        )
        if not seen:
            await ws.send(wire.encode_text(assign_frame(model)))
            data = wire.encode_tensor(model)
            await ws.send(
                wire.encode_binary({"type": "model", "version": 5, "seq": 0, "total": 1}, data)
            )
            assert wire.decode_text(await ws.recv())["type"] == "accept"
        header, payload = wire.decode_binary(await ws.recv())
        seen.append({**header, "payload": bytes(payload)})
        if len(seen) == 1:
            await ws.close()  # drop before acknowledging: the worker must send it again
            return
        await ws.send(
            wire.encode_text({"type": "result_ack", "assignment": 11, "status": "accepted"})
        )
        stop.set()

    async with websockets.serve(server, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        worker = Worker(f"ws://127.0.0.1:{port}", "secret", X, y, max_backoff_s=0.2)
        await asyncio.wait_for(worker.run(stop), 20)

    first, second = seen
    assert first["type"] == second["type"] == "update"
    assert first["upload"] == second["upload"] and first["payload"] == second["payload"]
    expected, _ = get_kernel("softmax").train(model, X, y, CONFIG)
    update = wire.decode_tensor(first["payload"], "f32", model.size)
    np.testing.assert_allclose(update, expected - model, rtol=1e-6, atol=1e-7)
    assert first["sha256"] == wire.sha256_hex(first["payload"]) and first["num_samples"] == len(y)
    assert worker.stats.accepted == 1 and not worker.pending


async def test_a_worker_without_data_runs_a_unit_and_resends_its_result_after_a_drop() -> None:
    unit = {
        "type": "unit",
        "unit": 7,
        "job": 1,
        "kernel": "primes",
        "config": {"lo": 1, "hi": 1000},
        "spec": {"start": 1, "stop": 101},
        "deadline": "2030-01-01T00:00:00+00:00",
    }
    seen: list[dict] = []
    stop = asyncio.Event()

    async def server(ws) -> None:
        hello = wire.decode_text(await ws.recv())
        assert hello["capabilities"]["kernels"] == ["montecarlo", "primes", "sweep"]
        await ws.send(
            wire.encode_text({"type": "welcome", "worker": 1, "protocol": 1, "heartbeat_s": 5})
        )
        await ws.send(wire.encode_text(unit))  # offered again after the reconnect, too
        seen.append(wire.decode_text(await ws.recv()))
        if len(seen) == 1:
            await ws.close()  # drop before acknowledging: the worker must send it again
            return
        await ws.send(wire.encode_text({"type": "unit_ack", "unit": 7, "status": "accepted"}))
        stop.set()

    async with websockets.serve(server, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        worker = Worker(f"ws://127.0.0.1:{port}", "secret", max_backoff_s=0.2)
        await asyncio.wait_for(worker.run(stop), 20)

    first, second = seen
    assert first["type"] == "unit_result" and first == second
    assert first["result"] == {"start": 1, "stop": 101, "count": 25}
    assert worker.stats.accepted == 1 and not worker.unit_results


def test_it_runs_compute_units_only_when_given_no_data() -> None:
    X, y = load_data(parse_args(["--server", "ws://x", "--token", "t"]))
    assert X is None and y is None

"""Local-training throughput of the JavaScript kernels under Node against the numpy kernels.

Measures, in one run, the samples per second of one epoch of local SGD (batch 32, the training
step of a worker) for the ``softmax`` kernel and the ``mlp`` kernel (hidden 64) on the digits
training set repeated to about 20,000 rows:
1. the numpy kernel (``Kernel.train``), best of ``--repeat``;
2. the JavaScript kernel (``kernels/softmax.js``, ``kernels/mlp.js``) under Node, driven by
   ``bench/kernels_js.mjs`` with the same rows, starting weights and batch order (one seeded
   permutation cut into batches, passed to both as an explicit batch order), best of
   ``--repeat`` after one untimed warm-up run;
and prints both, the JS/numpy ratio and each side's final training loss (the two should agree to
about 1e-6, a check that both did the same work). The times include the metrics pass over the
data that ``train`` ends with. Figures are printed, never asserted on.

Run from the repository root (needs ``node`` on PATH):
    python bench/kernels_js.py [--rows 20000] [--hidden 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernels import get_kernel, load_dataset

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZE = 32


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="about this many training rows")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units of the mlp")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per kernel (best kept)")
    return parser.parse_args()


def make_data(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The digits training set tiled to about ``rows`` rows, and one seeded epoch order."""
    data = load_dataset("digits")
    copies = max(1, round(rows / len(data.y_train)))
    X = np.ascontiguousarray(np.tile(data.X_train, (copies, 1)), dtype=np.float32)
    y = np.tile(data.y_train, copies).astype(np.int32)
    order = np.random.default_rng(0).permutation(len(y)).astype(np.int32)
    return X, y, order


def make_runs(hidden: int) -> list[dict[str, Any]]:
    runs = []
    for name, extra in (("softmax", {}), ("mlp", {"hidden": hidden})):
        kernel = get_kernel(name)
        config = kernel.resolve_config(
            {"dataset": "digits", "epochs": 1, "batch_size": BATCH_SIZE, "lr": 0.05, **extra}
        )
        weights = kernel.init(config)
        runs.append({"kernel": name, "config": config, "weights": weights.tolist()})
    return runs


def time_numpy(
    run: dict[str, Any], X: np.ndarray, y: np.ndarray, order: np.ndarray, repeat: int
) -> tuple[float, dict[str, Any]]:
    kernel = get_kernel(run["kernel"])
    weights = np.asarray(run["weights"], dtype=np.float32)
    batches = [order[start : start + BATCH_SIZE] for start in range(0, len(order), BATCH_SIZE)]
    best, metrics = math.inf, {}
    for _ in range(repeat):
        start = time.perf_counter()
        _, metrics = kernel.train(weights, X, y, run["config"], batch_order=batches)
        best = min(best, time.perf_counter() - start)
    return best, metrics


def time_node(
    node: str,
    runs: list[dict[str, Any]],
    X: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    repeat: int,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        X.tofile(folder / "X.f32")
        y.tofile(folder / "y.i32")
        order.tofile(folder / "order.i32")
        meta = {"n": len(y), "d": X.shape[1], "repeat": repeat, "runs": runs}
        (folder / "meta.json").write_text(json.dumps(meta))
        script = ROOT / "bench" / "kernels_js.mjs"
        result = subprocess.run(
            [node, str(script), str(folder)], capture_output=True, text=True, check=True
        )
    return json.loads(result.stdout)


def main() -> None:
    args = parse_args()
    node = shutil.which("node")
    if node is None:
        sys.exit("node is not on PATH; install Node.js to run this benchmark.")
    X, y, order = make_data(args.rows)
    runs = make_runs(args.hidden)
    report = time_node(node, runs, X, y, order, args.repeat)
    print(
        f"one epoch of local SGD, batch {BATCH_SIZE}, on {len(y):,} digits rows "
        f"({X.shape[1]} features); numpy {np.__version__}, node {report['node']}; "
        f"best of {args.repeat}"
    )
    header = f"{'kernel':<16}{'numpy samples/s':>17}{'JS samples/s':>15}{'JS/numpy':>10}"
    print(header + f"{'numpy loss':>13}{'JS loss':>13}")
    for run, js in zip(runs, report["results"], strict=True):
        numpy_seconds, numpy_metrics = time_numpy(run, X, y, order, args.repeat)
        js_seconds = min(js["seconds"])
        label = run["kernel"] + (f" (h={args.hidden})" if run["kernel"] == "mlp" else "")
        numpy_rate, js_rate = len(y) / numpy_seconds, len(y) / js_seconds
        print(
            f"{label:<16}{numpy_rate:>17,.0f}{js_rate:>15,.0f}{js_rate / numpy_rate:>10.2f}"
            f"{numpy_metrics['loss']:>13.6f}{js['metrics']['loss']:>13.6f}"
        )


if __name__ == "__main__":
    main()

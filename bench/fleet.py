"""Many networked Python workers in one process (each its own socket), for benchmarks.

python bench/fleet.py --server ws://127.0.0.1:8000 --tokens tokens.txt --shard-base 0 --count 100
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ccgsc_client.worker import Worker  # noqa: E402
from kernels import load_shard  # noqa: E402


async def run(args: argparse.Namespace) -> None:
    tokens = Path(args.tokens).read_text().split()
    workers = []
    for offset, token in enumerate(tokens):
        index = args.shard_base + offset
        X, y = load_shard(args.dataset, index, args.count, args.partition, 0)
        workers.append(Worker(args.server, token, X, y, name=f"fleet-{index}"))
    await asyncio.gather(*(worker.run() for worker in workers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True)
    parser.add_argument("--tokens", required=True, help="a file with one token per line")
    parser.add_argument("--shard-base", type=int, default=0)
    parser.add_argument("--count", type=int, required=True, help="total shards in the job")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--partition", default="iid")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

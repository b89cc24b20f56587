"""The real stack as separate processes: Postgres, Redis, Daphne, a Celery worker with beat.

Used by the system tests and the round benchmark. Each Stack gets its own Postgres database
and Redis database number, so runs never see each other's state.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("CCGSC_TEST_PG_ADMIN", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("CCGSC_TEST_REDIS_URL", "redis://127.0.0.1:6379")


_CLAIM_KEY = "ccgsc:stack-claim"
_CLAIM_SECONDS = 3600


def _claim_redis_db() -> int:
    """A Redis database (1-15) no other running stack uses: its Celery queues and channel
    layer must not be shared, or two test runs would consume each other's tasks."""
    for db in random.sample(range(1, 16), 15):
        if redis.Redis.from_url(f"{REDIS}/{db}").set(
            _CLAIM_KEY, os.getpid(), nx=True, ex=_CLAIM_SECONDS
        ):
            return db
    raise RuntimeError("every Redis database 1-15 is claimed by a running stack")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    def __init__(self, tmp: Path, *, concurrency: int = 2, **settings: str) -> None:
        self.tmp = tmp
        self.db_name = f"ccgsc_sys_{os.getpid()}_{secrets.token_hex(3)}"
        self.redis_db = _claim_redis_db()
        self.port = free_port()
        self.concurrency = concurrency
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHON": sys.executable,
            "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + f"/{self.db_name}",
            "REDIS_URL": f"{REDIS}/{self.redis_db}",
            "CCGSC_VAR_DIR": str(tmp / "var"),
            "SECRET_KEY": secrets.token_urlsafe(32),
            "DB_CONN_MAX_AGE": "60",
            **settings,
        }
        self.media = tmp / "var" / "media"
        self.daphne: subprocess.Popen | None = None
        self.celery: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.token = self.enrollment_key = ""

    # life cycle ---------------------------------------------------------------------------
    def start(self) -> Stack:
        self._flush_redis()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.manage("migrate", "-v", "0")
        creds = json.loads(self.manage("bootstrap", "--tenant", "system", "--username", "ops"))
        self.token, self.enrollment_key = creds["token"], creds["enrollment_key"]
        self.start_celery()
        self.start_daphne()
        return self

    def stop(self) -> None:
        for proc in [*self.workers, self.daphne, self.celery]:
            _terminate(proc)
        self._release_redis()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{out.stderr}")
        return out.stdout

    def start_daphne(self) -> None:
        self.daphne = self._spawn(
            "daphne", ["bash", "scripts/serve.sh", "127.0.0.1", str(self.port)]
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.daphne.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log('daphne')}")
            try:
                requests.get(f"{self.base_url}/admin/login/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("daphne did not start")

    def kill_daphne(self) -> None:
        _terminate(self.daphne, sig=signal.SIGKILL)

    def start_celery(self) -> None:
        log = self.tmp / "celery.log"
        log.write_text("")
        self.celery = self._spawn(
            "celery",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "ccgsc",
                "worker",
                "-B",
                "-l",
                "info",
                "-c",
                str(self.concurrency),
                "--schedule",
                str(self.tmp / "beat-schedule"),
                "--without-gossip",
                "--without-mingle",
            ],
        )
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            if self.celery.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery did not start: {self.log('celery')}")
            time.sleep(0.1)

    def kill_celery(self) -> None:
        _terminate(self.celery, sig=signal.SIGKILL)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "a")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
        )

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def _flush_redis(self) -> None:
        """Empty this stack's Redis database, keeping the claim on it."""
        client = redis.Redis.from_url(f"{REDIS}/{self.redis_db}")
        client.flushdb()
        client.set(_CLAIM_KEY, os.getpid(), ex=_CLAIM_SECONDS)

    def _release_redis(self) -> None:
        redis.Redis.from_url(f"{REDIS}/{self.redis_db}").flushdb()

    # workers and data -------------------------------------------------------------------------
    def enroll(self, name: str) -> str:
        response = requests.post(
            f"{self.base_url}/api/v1/workers/enroll/",
            timeout=10,
            json={"enrollment_key": self.enrollment_key, "name": name},
        )
        response.raise_for_status()
        return response.json()["token"]

    def spawn_worker(
        self,
        token: str,
        shard: str = "0/1",
        *,
        dataset: str | None = "digits",
        partition: str = "iid",
        delay: float = 0.0,
        faulty_compute: bool = False,
        cpu_limit: float = 100.0,
        slots: int = 1,
    ) -> subprocess.Popen:
        """A worker process; with no dataset it runs compute units only (wrongly, when
        ``faulty_compute``: a test fault injector; at a share of its time, ``cpu_limit``; ``slots``
        units at once)."""
        argv = [
            sys.executable,
            "-m",
            "ccgsc_client.worker",
            "--server",
            self.ws_url,
            f"--token={token}",
            "--delay",
            str(delay),
            "--cpu-limit",
            str(cpu_limit),
            "--slots",
            str(slots),
        ]
        if dataset is not None:
            argv += ["--dataset", dataset, "--shard", shard, "--partition", partition]
        if faulty_compute:
            argv.append("--faulty-compute")
        proc = self._spawn(f"worker-{len(self.workers)}", argv)
        self.workers.append(proc)
        return proc

    def sql(self, query: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.env["DATABASE_URL"]) as conn:
            return conn.execute(query, params).fetchall()


def _terminate(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)

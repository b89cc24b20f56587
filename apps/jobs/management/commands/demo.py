"""The demo: a server, 20 Python workers on Dirichlet(0.5) shards of digits, 15 FedAvg rounds.

Runs on the embedded stack (SQLite, in-memory channel layer, eager Celery) unless the
environment says otherwise. Prints a progress bar per round, the final accuracy and the
Director's address, then keeps serving until interrupted (when run from a terminal).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from io import StringIO

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from tqdm import tqdm

from ccgsc_client import Client


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--workers", type=int, default=20)
        parser.add_argument("--rounds", type=int, default=15)
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--kernel", default="softmax")
        parser.add_argument("--partition", default="dirichlet:0.5")
        parser.add_argument(
            "--serve",
            choices=["auto", "yes", "no"],
            default="auto",
            help="keep serving after the job (auto: when run from a terminal)",
        )

    def handle(self, *args, **options) -> None:
        port = options["port"]
        if _port_busy(port):
            raise SystemExit(f"port {port} is in use: pass --port")
        creds = _bootstrap()
        base, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        with ExitStack() as stack:
            # The same Daphne flags as production: model-sized frames, no idle timeout.
            server = _spawn(stack, ["bash", "scripts/serve.sh", "127.0.0.1", str(port)])
            _wait_http(base, server)
            self.stdout.write(f"server up at {base} (Daphne)")
            tokens = [_enroll(base, creds["enrollment_key"], i) for i in range(options["workers"])]
            for i, token in enumerate(tokens):
                _spawn(
                    stack,
                    [
                        sys.executable,
                        "-m",
                        "ccgsc_client.worker",
                        "--server",
                        ws,
                        f"--token={token}",
                        "--dataset",
                        "digits",
                        "--shard",
                        f"{i}/{len(tokens)}",
                        "--partition",
                        options["partition"],
                        "--name",
                        f"demo-{i}",
                    ],
                )
            self.stdout.write(
                f"{len(tokens)} Python workers started on {options['partition']} shards of digits"
            )
            job = self._run_job(Client(base, creds["token"]), options)
            self._report(job, base, creds)
            if options["serve"] == "yes" or (options["serve"] == "auto" and sys.stdin.isatty()):
                self.stdout.write("serving; press Ctrl-C to stop")
                _wait_for_interrupt(server)

    def _run_job(self, client: Client, options: dict):
        job = client.jobs.create(
            name=f"demo: {options['kernel']} on digits",
            kernel=options["kernel"],
            config={"dataset": "digits", "lr": 0.1, "epochs": 2, "batch_size": 16},
            policy={
                "cohort_size": options["workers"],
                "min_reports": max(1, options["workers"] // 2),
                "max_rounds": options["rounds"],
                "round_deadline_s": 60,
                "selection_timeout_s": 30,
            },
        )
        job.start()
        bar = tqdm(total=options["rounds"], unit="round", desc="FedAvg", file=sys.stdout)

        def on_round(fl_round: dict) -> None:
            accuracy = fl_round["metrics"].get("accuracy")
            bar.set_postfix(
                acc=f"{accuracy:.3f}" if accuracy is not None else "-",
                workers=fl_round["participants"],
            )
            bar.update(1 if fl_round["status"] == "closed" else 0)

        job.wait(timeout=1800, on_round=on_round)
        bar.close()
        return job

    def _report(self, job, base: str, creds: dict) -> None:
        latest = job.data["latest_model"] or {}
        accuracy = latest.get("metrics", {}).get("accuracy")
        self.stdout.write(f"job {job.id} {job.status}; final model v{latest.get('version')}")
        if accuracy is not None:
            self.stdout.write(f"final accuracy on held-out digits: {accuracy:.4f}")
        password = creds["password"] or "as set before (manage.py changepassword resets it)"
        self.stdout.write(f"Director: {base}/director/jobs/{job.id}/")
        self.stdout.write(f"  log in as {creds['username']}, password: {password}")
        self.stdout.write(f"Volunteer page: {base}/worker/join/{creds['enrollment_key']}/")
        self.stdout.write(f"API docs: {base}/api/docs/")
        if job.status != "completed":
            raise SystemExit(f"job ended {job.status}: {job.data['error']}")


def _bootstrap() -> dict:
    out = StringIO()
    call_command("bootstrap", "--tenant", "demo", "--username", "admin", stdout=out)
    return json.loads(out.getvalue())


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _spawn(stack: ExitStack, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(settings.BASE_DIR), "PYTHON": sys.executable}
    proc = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env)
    stack.callback(_stop, proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_http(base: str, server: subprocess.Popen) -> None:
    for _ in range(200):
        if server.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            requests.get(f"{base}/admin/login/", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def _enroll(base: str, key: str, index: int) -> str:
    response = requests.post(
        f"{base}/api/v1/workers/enroll/",
        timeout=10,
        json={"enrollment_key": key, "name": f"demo-{index}"},
    )
    response.raise_for_status()
    return response.json()["token"]


def _wait_for_interrupt(server: subprocess.Popen) -> None:
    try:
        server.wait()
    except KeyboardInterrupt:
        pass

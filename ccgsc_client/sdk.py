"""The data scientist's SDK: submit training and compute jobs, follow them, fetch results.

client = Client("http://localhost:8000", token)
job = client.jobs.create(name="digits", kernel="softmax", config={"dataset": "digits"},
                         policy={"cohort_size": 10, "max_rounds": 15})
job.start(); job.wait()
weights = client.download_model(job.models()[-1]["id"])

job = client.jobs.create(name="primes", type="compute", kernel="primes",
                         config={"lo": 1, "hi": 10**7}, policy={"unit_seconds": 5})
job.start(); job.wait(); job.result()["count"]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import requests

from ccgsc_client import wire

FINISHED = {"completed", "failed", "cancelled"}


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


class Client:
    def __init__(
        self, url: str, token: str, *, tenant: str | None = None, timeout: float = 30.0
    ) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        if tenant:
            self.session.headers["X-CCGSC-Tenant"] = tenant
        self.timeout = timeout
        self.jobs = Jobs(self)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(
            method, f"{self.url}/api/v1/{path.lstrip('/')}", timeout=self.timeout, **kwargs
        )
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise ApiError(response.status_code, body)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, data: dict | None = None) -> Any:
        return self.request("POST", path, json=data or {}).json()

    def all_pages(self, path: str) -> list[dict]:
        results, offset = [], 0
        while True:
            page = self.get(path, limit=500, offset=offset)
            results.extend(page["results"])
            offset += len(page["results"])
            if not page["next"] or not page["results"]:
                return results

    def kernels(self) -> list[dict]:
        return self.get("kernels/")

    def workers(self) -> list[dict]:
        return self.all_pages("workers/")

    def download_model(self, model_id: int) -> np.ndarray:
        """A model version's float32 parameters, checked against the server's SHA-256."""
        response = self.request("GET", f"models/{model_id}/download/")
        data = response.content
        if wire.sha256_hex(data) != response.headers["X-Checksum-SHA256"]:
            raise ApiError(response.status_code, "downloaded model does not match its SHA-256")
        return wire.decode_tensor(data, "f32", int(response.headers["X-Model-Length"]))


class Jobs:
    def __init__(self, client: Client) -> None:
        self.client = client

    def create(
        self,
        *,
        name: str,
        kernel: str,
        config: dict | None = None,
        policy: dict | None = None,
        type: str = "train",
    ) -> Job:
        data = self.client.post(
            "jobs/",
            {
                "name": name,
                "type": type,
                "kernel": kernel,
                "config": config or {},
                "policy": policy or {},
            },
        )
        return Job(self.client, data)

    def get(self, job_id: int) -> Job:
        return Job(self.client, self.client.get(f"jobs/{job_id}/"))

    def list(self) -> list[Job]:
        return [Job(self.client, data) for data in self.client.all_pages("jobs/")]


class Job:
    def __init__(self, client: Client, data: dict) -> None:
        self.client, self.data = client, data

    @property
    def id(self) -> int:
        return self.data["id"]

    @property
    def status(self) -> str:
        return self.data["status"]

    @property
    def progress(self) -> dict | None:
        """A compute job's units by stage and the share of its space done (``percent``) and
        cut (``cut_percent``), as of the last refresh; None for other jobs."""
        return self.data.get("progress")

    def refresh(self) -> Job:
        self.data = self.client.get(f"jobs/{self.id}/")
        return self

    def _action(self, action: str) -> Job:
        self.data = self.client.post(f"jobs/{self.id}/{action}/")
        return self

    def start(self) -> Job:
        return self._action("start")

    def pause(self) -> Job:
        return self._action("pause")

    def cancel(self) -> Job:
        return self._action("cancel")

    def rounds(self) -> list[dict]:
        return self.client.all_pages(f"jobs/{self.id}/rounds/")

    def models(self) -> list[dict]:
        return self.client.all_pages(f"jobs/{self.id}/models/")

    def units(self) -> list[dict]:
        """A compute job's work units, in index order."""
        return self.client.all_pages(f"jobs/{self.id}/units/")

    def result(self) -> dict:
        """A completed compute job's reduced result (ApiError 404 before then)."""
        return self.client.get(f"jobs/{self.id}/result/")["result"]

    def download_model(self, model_id: int | None = None) -> np.ndarray:
        """The given model version, or the job's latest."""
        if model_id is None:
            model_id = self.refresh().data["latest_model"]["id"]
        return self.client.download_model(model_id)

    def wait(
        self,
        *,
        timeout: float = 3600.0,
        poll: float = 0.5,
        on_round: Callable[[dict], None] | None = None,
    ) -> Job:
        """Block until the job finishes; ``on_round`` sees each round once it has ended."""
        deadline, seen = time.monotonic() + timeout, set()
        while True:
            if on_round is not None:
                for fl_round in self.rounds():
                    key = (fl_round["number"], fl_round["attempt"])
                    if fl_round["status"] in ("closed", "failed") and key not in seen:
                        seen.add(key)
                        on_round(fl_round)
            if self.refresh().status in FINISHED:
                return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {self.status} after {timeout} s")
            time.sleep(poll)

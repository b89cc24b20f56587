"""Plain ``make_*`` helpers for the apps' tests (no factory library needed yet)."""

from __future__ import annotations

import itertools

import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.jobs import services as job_services
from apps.jobs.models import Job, Membership, Tenant, Worker
from ccgsc_client import wire

_seq = itertools.count(1)


def make_tenant(slug: str | None = None, **fields) -> Tenant:
    slug = slug or f"tenant-{next(_seq)}"
    return Tenant.objects.create(name=slug.title(), slug=slug, **fields)


def make_user(tenant: Tenant, *, staff: bool = False, role: str = "scientist"):
    user = get_user_model().objects.create_user(
        username=f"user-{next(_seq)}", password="pw-test-123", is_staff=staff
    )
    Membership.objects.create(user=user, tenant=tenant, role=role)
    Token.objects.create(user=user)
    return user


def make_worker(tenant: Tenant, *, connected: bool = True, name: str = "") -> tuple[Worker, str]:
    worker, token = job_services.worker_enroll(
        enrollment_key=tenant.enrollment_key, name=name or f"w-{next(_seq)}"
    )
    if connected:
        Worker.objects.filter(pk=worker.pk).update(
            channel_name=f"test.channel.{worker.pk}",
            last_seen=timezone.now(),
            connected_at=timezone.now(),
        )
        worker.refresh_from_db()
    return worker, token


def make_job(
    tenant: Tenant,
    *,
    kernel: str = "softmax",
    config: dict | None = None,
    policy: dict | None = None,
    user=None,
) -> Job:
    return job_services.job_create(
        tenant=tenant,
        user=user,
        name=f"job-{next(_seq)}",
        type="train",
        kernel=kernel,
        config=config if config is not None else {"dataset": "iris", "epochs": 1},
        policy={"cohort_size": 3, "min_reports": 2, "selection_timeout_s": 0, **(policy or {})},
    )


def make_compute_job(
    tenant: Tenant,
    *,
    kernel: str = "primes",
    config: dict | None = None,
    policy: dict | None = None,
    user=None,
) -> Job:
    return job_services.job_create(
        tenant=tenant,
        user=user,
        name=f"job-{next(_seq)}",
        type="compute",
        kernel=kernel,
        config=config if config is not None else {"lo": 1, "hi": 100_000},
        policy=policy if policy is not None else {"unit_seconds": 2e-5},
    )


def make_compute_worker(tenant: Tenant, *, kernels: list[str] | None = None) -> Worker:
    """A connected worker that says it runs the given compute kernels (all of them by default)."""
    worker, _ = make_worker(tenant)
    names = kernels if kernels is not None else ["primes", "montecarlo", "sweep"]
    Worker.objects.filter(pk=worker.pk).update(capabilities={"kernels": names})
    worker.refresh_from_db()
    return worker


def make_analytics_job(
    tenant: Tenant, *, config: dict | None = None, policy: dict | None = None, user=None
) -> Job:
    return job_services.job_create(
        tenant=tenant,
        user=user,
        name=f"job-{next(_seq)}",
        type="analytics",
        kernel="analytics",
        config=config if config is not None else {"statistic": "count", "max_rows": 100},
        policy=policy if policy is not None else {},
    )


def make_data_worker(tenant: Tenant, *, samples: int = 100) -> Worker:
    """A connected Python worker that says it holds ``samples`` rows of data."""
    worker, _ = make_worker(tenant)
    Worker.objects.filter(pk=worker.pk).update(capabilities={"samples": samples})
    worker.refresh_from_db()
    return worker


def store_update(values: np.ndarray, codec: str = "f32") -> tuple[str, str, int]:
    """Put an update in storage as the gateway would; return (key, sha256, size)."""
    data = wire.encode_tensor(values, codec)
    key = default_storage.save(f"updates/test/{next(_seq)}.{codec}", ContentFile(data))
    return key, wire.sha256_hex(data), len(data)

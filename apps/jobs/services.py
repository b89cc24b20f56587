"""Writes for tenants, workers and jobs: one transaction each, side effects after commit."""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.jobs import analytics, compute, gateway
from apps.jobs.analytics_policy import resolve_analytics_policy
from apps.jobs.compute_policy import resolve_compute_policy
from apps.jobs.models import Job, Tenant, Worker
from apps.registry.services import model_version_create
from apps.rounds import services as round_services
from apps.rounds.models import Round
from apps.rounds.policy import PolicyError, resolve_policy
from apps.rounds.selectors import open_round
from kernels import KernelConfigError, UnknownKernel, get_kernel
from kernels import analytics as analytics_kernel
from kernels.compute import get_compute_kernel


class ServiceError(Exception):
    """A request the current state does not allow; ``errors`` maps fields to messages."""

    def __init__(self, errors: dict[str, list[str]] | str) -> None:
        if isinstance(errors, str):
            errors = {"non_field_errors": [errors]}
        super().__init__(errors)
        self.errors = errors


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def worker_enroll(
    *,
    enrollment_key: str,
    name: str = "",
    kind: str = Worker.Kind.PYTHON,
    capabilities: dict | None = None,
    consent_version: str = "",
) -> tuple[Worker, str]:
    """Enroll a worker with its tenant's key; the raw token is returned once and kept hashed.

    A browser volunteer must consent (to the explainer's version) before it can enroll.
    """
    tenant = Tenant.objects.select_for_update().filter(enrollment_key=enrollment_key).first()
    if tenant is None:
        raise ServiceError({"enrollment_key": ["unknown enrollment key"]})
    if kind == Worker.Kind.BROWSER and not consent_version:
        raise ServiceError({"consent_version": ["a volunteer must consent before joining"]})
    if tenant.workers.filter(is_active=True).count() >= tenant.max_workers:
        raise ServiceError(
            f"tenant {tenant.slug} has reached its quota of {tenant.max_workers} workers"
        )
    raw = "ccw_" + secrets.token_urlsafe(32)  # a prefix: never read as a CLI option, easy to scan
    worker = Worker.objects.create(
        tenant=tenant,
        name=name,
        kind=kind,
        capabilities=clean_capabilities(capabilities or {}),
        consent_version=consent_version,
        consented_at=timezone.now() if consent_version else None,
        token_hash=hash_token(raw),
        token_expires_at=timezone.now() + timedelta(days=settings.CCGSC_WORKER_TOKEN_TTL_DAYS),
    )
    return worker, raw


def worker_authenticate(raw_token: str) -> tuple[Worker | None, str]:
    """The worker a token belongs to, or None and why: "bad_token", "expired", "disabled"."""
    worker = Worker.objects.filter(token_hash=hash_token(raw_token)).first()
    if worker is None:
        return None, "bad_token"
    if worker.token_expires_at and worker.token_expires_at <= timezone.now():
        return None, "expired"
    if not worker.is_active:
        return None, "disabled"
    return worker, ""


MAX_SLOTS = 64  # compute units one worker may run at once


def clean_capabilities(capabilities: dict) -> dict:
    """What a worker says of itself, kept only where it has the expected shape."""
    out: dict = {}
    for key in ("kernels", "codecs"):
        value = capabilities.get(key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = value[:64]
    for key in ("samples", "n_features", "samples_per_s"):
        value = capabilities.get(key)
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0
        ):
            out[key] = value
    slots = capabilities.get("slots")
    if isinstance(slots, int) and not isinstance(slots, bool) and 1 <= slots <= MAX_SLOTS:
        out["slots"] = slots
    if isinstance(capabilities.get("model_push"), bool):
        out["model_push"] = capabilities["model_push"]
    if isinstance(capabilities.get("runtime"), str):
        out["runtime"] = capabilities["runtime"][:32]
    return out


@transaction.atomic
def worker_connect(
    *, worker_id: int, channel_name: str, capabilities: dict
) -> tuple[str, list[dict]]:
    """Record the worker's live channel.

    Returns the channel it replaces (if any) and the events re-offering the assignments the
    worker still holds from before this connection.
    """
    worker = Worker.objects.select_for_update().get(pk=worker_id)
    previous = worker.channel_name
    now = timezone.now()
    worker.channel_name, worker.connected_at, worker.last_seen = channel_name, now, now
    worker.capabilities = clean_capabilities(capabilities)
    worker.samples_per_s = worker.capabilities.get("samples_per_s", worker.samples_per_s)
    worker.save(
        update_fields=["channel_name", "connected_at", "last_seen", "capabilities", "samples_per_s"]
    )
    selecting = Round.objects.filter(
        status=Round.Status.SELECTING,
        job__tenant_id=worker.tenant_id,
        job__status=Job.Status.RUNNING,
    ).values_list("id", flat=True)
    for round_id in selecting:
        transaction.on_commit(lambda rid=round_id: round_services._tasks().round_select.delay(rid))
    held = round_services.worker_open_assignments(worker_id=worker_id)
    return (previous if previous != channel_name else ""), held


def worker_disconnect(*, worker_id: int, channel_name: str) -> bool:
    """Forget the channel if it is still the worker's; True when the worker is now offline."""
    return bool(
        Worker.objects.filter(pk=worker_id, channel_name=channel_name).update(
            channel_name="", last_seen=timezone.now()
        )
    )


def worker_touch(*, worker_id: int, channel_name: str) -> None:
    """A sign of life; a worker the sweep took for gone is online again on this channel."""
    Worker.objects.filter(pk=worker_id).update(last_seen=timezone.now())
    Worker.objects.filter(pk=worker_id, channel_name="").update(channel_name=channel_name)


@transaction.atomic
def job_create(
    *, tenant: Tenant, user, name: str, type: str, kernel: str, config: dict, policy: dict
) -> Job:
    """Validate the kernel's config and the job's policy, then store a draft job."""
    validate = _VALIDATORS.get(type, _validate_train)
    resolved_config, resolved_policy = validate(tenant, type, kernel, config, policy)
    privacy = analytics.new_ledger(resolved_policy) if type == Job.Type.ANALYTICS else None
    return Job.objects.create(
        tenant=tenant,
        created_by=user,
        name=name,
        type=type,
        kernel=kernel,
        config=resolved_config,
        policy=resolved_policy,
        privacy=privacy,
    )


def _field_messages(errors: dict[str, list[str]]) -> list[str]:
    return [f"{field}: {msg}" for field, msgs in errors.items() for msg in msgs]


def _validate_train(
    tenant: Tenant, type: str, kernel: str, config: dict, policy: dict
) -> tuple[dict, dict]:
    errors: dict[str, list[str]] = {}
    resolved_config: dict = {}
    try:
        spec = get_kernel(kernel)
        resolved_config = spec.resolve_config(config)
        if spec.kind != type:
            errors["type"] = [f"kernel {kernel!r} runs {spec.kind!r} jobs"]
    except UnknownKernel:
        errors["kernel"] = [f"unknown kernel {kernel!r}"]
    except KernelConfigError as exc:
        errors["config"] = _field_messages(exc.errors)
    if resolved_config and 4 * spec.num_params(resolved_config) > tenant.max_model_bytes:
        errors["config"] = [f"the model exceeds the tenant's {tenant.max_model_bytes} bytes"]
    try:
        resolved_policy = resolve_policy(policy)
    except PolicyError as exc:
        errors["policy"] = _field_messages(exc.errors)
    if errors:
        raise ServiceError(errors)
    return resolved_config, resolved_policy


def _validate_compute(
    tenant: Tenant, type: str, kernel: str, config: dict, policy: dict
) -> tuple[dict, dict]:
    """A compute kernel, its config, and a policy whose unit size cuts the space finely
    enough but not into more units than a kernel allows."""
    errors: dict[str, list[str]] = {}
    resolved_config: dict = {}
    resolved_policy: dict = {}
    try:
        spec = get_compute_kernel(kernel)
        resolved_config = spec.resolve_config(config)
    except UnknownKernel:
        errors["kernel"] = [f"unknown compute kernel {kernel!r}"]
    except KernelConfigError as exc:
        errors["config"] = _field_messages(exc.errors)
    try:
        resolved_policy = resolve_compute_policy(policy)
    except PolicyError as exc:
        errors["policy"] = _field_messages(exc.errors)
    if resolved_config and resolved_policy:
        try:
            spec.split(resolved_config, target_cost=resolved_policy["unit_seconds"])
        except ValueError as exc:
            errors["policy"] = [f"unit_seconds: {exc}"]
    if errors:
        raise ServiceError(errors)
    return resolved_config, resolved_policy


def _validate_analytics(
    tenant: Tenant, type: str, kernel: str, config: dict, policy: dict
) -> tuple[dict, dict]:
    """The analytics kernel's config (kernels.analytics.resolve_config) and the job's policy."""
    errors: dict[str, list[str]] = {}
    resolved_config: dict = {}
    resolved_policy: dict = {}
    if kernel != "analytics":
        errors["kernel"] = ["analytics jobs run the 'analytics' kernel"]
    try:
        resolved_config = analytics_kernel.resolve_config(config)
    except KernelConfigError as exc:
        errors["config"] = _field_messages(exc.errors)
    try:
        resolved_policy = resolve_analytics_policy(policy, resolved_config)
    except PolicyError as exc:
        errors["policy"] = _field_messages(exc.errors)
    if errors:
        raise ServiceError(errors)
    return resolved_config, resolved_policy


_VALIDATORS = {Job.Type.COMPUTE: _validate_compute, Job.Type.ANALYTICS: _validate_analytics}


@transaction.atomic
def job_start(*, job_id: int) -> Job:
    """draft → running (with the initial model and round 1, a compute job's units, or an
    analytics job's contribution requests); paused → running resumes."""
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.status == Job.Status.RUNNING:
        return job
    if job.status not in (Job.Status.DRAFT, Job.Status.PAUSED):
        raise ServiceError(f"a {job.status} job cannot be started")
    running = Job.objects.filter(tenant_id=job.tenant_id, status=Job.Status.RUNNING).count()
    if running >= job.tenant.max_running_jobs:
        raise ServiceError(
            f"the tenant's quota of {job.tenant.max_running_jobs} running jobs is used"
        )
    first_start = job.status == Job.Status.DRAFT
    job.status = Job.Status.RUNNING
    job.started_at = job.started_at or timezone.now()
    job.save(update_fields=["status", "started_at"])
    if job.type == Job.Type.COMPUTE:
        compute.job_units_start(job=job, first_start=first_start)
    elif job.type == Job.Type.ANALYTICS:
        analytics.job_contributions_start(job=job)
    elif first_start:
        spec = get_kernel(job.kernel)
        model = model_version_create(job_id=job.id, version=0, weights=spec.init(job.config))
        round_services.round_open(job=job, base_model=model, number=1)
    else:
        _resume(job)
    transaction.on_commit(lambda: gateway.notify_director(job.id))
    return job


def _resume(job: Job) -> None:
    current = open_round(job)
    if current is None:
        last = job.model_versions.order_by("-version").first()
        closed = job.rounds.filter(status=Round.Status.CLOSED).order_by("-number").first()
        round_services.round_open(
            job=job, base_model=last, number=(closed.number if closed else 0) + 1
        )
    elif current.status == Round.Status.SELECTING:
        transaction.on_commit(lambda: round_services._tasks().round_select.delay(current.id))


@transaction.atomic
def job_pause(*, job_id: int) -> Job:
    """running → paused: the round in flight finishes, no new round opens until resumed."""
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.status == Job.Status.PAUSED:
        return job
    if job.status != Job.Status.RUNNING:
        raise ServiceError(f"a {job.status} job cannot be paused")
    job.status = Job.Status.PAUSED
    job.save(update_fields=["status"])
    transaction.on_commit(lambda: gateway.notify_director(job.id))
    return job


@transaction.atomic
def job_cancel(*, job_id: int) -> Job:
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.status == Job.Status.CANCELLED:
        return job
    if job.is_finished:
        raise ServiceError(f"a {job.status} job cannot be cancelled")
    current = open_round(job)
    if current is not None:
        current = Round.objects.select_for_update().get(pk=current.pk)
        round_services.round_stop(current, "job cancelled")
    round_services.job_finish(job, Job.Status.CANCELLED)
    return job

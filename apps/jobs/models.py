"""Tenants, their members, jobs, workers, compute jobs' work units and replicas, and analytics
contributions."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


def new_enrollment_key() -> str:
    return secrets.token_urlsafe(24)


class Tenant(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    enrollment_key = models.CharField(max_length=64, unique=True, default=new_enrollment_key)
    max_workers = models.PositiveIntegerField(default=10_000)
    max_running_jobs = models.PositiveIntegerField(default=10)
    max_model_bytes = models.PositiveBigIntegerField(default=256 * 1024 * 1024)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin"
        SCIENTIST = "scientist"
        VIEWER = "viewer"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.SCIENTIST)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


class Job(models.Model):
    class Type(models.TextChoices):
        TRAIN = "train"
        COMPUTE = "compute"
        ANALYTICS = "analytics"

    class Status(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.TRAIN)
    kernel = models.CharField(max_length=64)
    config = models.JSONField(default=dict)
    policy = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    error = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)  # a compute or analytics job's result
    # An analytics job's privacy ledger (apps.rounds.privacy.Ledger.to_dict): its budget and
    # the releases charged to it, saved in the transaction that stores each release.
    privacy = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["tenant", "status"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.COMPLETED, self.Status.FAILED, self.Status.CANCELLED}


class Worker(models.Model):
    class Kind(models.TextChoices):
        PYTHON = "python"
        BROWSER = "browser"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="workers")
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PYTHON)
    capabilities = models.JSONField(default=dict, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    channel_name = models.CharField(max_length=200, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    samples_per_s = models.FloatField(null=True, blank=True)
    updates_accepted = models.PositiveIntegerField(default=0)
    updates_rejected = models.PositiveIntegerField(default=0)
    bad_frames = models.PositiveIntegerField(default=0)
    consent_version = models.CharField(max_length=32, blank=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    # Credit: the cost of the compute units this worker's results helped validate. Trust, in
    # [0, 1]: rises with results that agree with a quorum, halves with each rejected one; see
    # apps.jobs.validation.
    credit = models.FloatField(default=0.0)
    trust = models.FloatField(default=0.5)
    # Measured compute speed per kernel, in cost units per second (apps.jobs.sizing): what
    # the next unit cut for this worker is sized from.
    compute_speeds = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["tenant", "channel_name"])]

    def __str__(self) -> str:
        return self.name or f"worker {self.pk}"

    @property
    def is_connected(self) -> bool:
        return bool(self.channel_name)


class WorkUnit(models.Model):
    """One slice [start, stop) of a compute job's index space, computed by ``wanted`` distinct
    workers (its replicas) until ``quorum`` of their results agree.

    The states follow the architecture page's "pending → assigned → returned → validated |
    disputed → done | failed":

    - pending: no replica out and no result yet (a fresh unit, or one whose replicas all
      timed out); the next claim decides ``wanted`` and ``quorum`` (apps.jobs.validation).
    - assigned: replicas are out (the "in progress" of the grid), no result back yet.
    - returned: results are back and agree so far, but fewer than ``quorum``.
    - disputed: returned results disagree; ``wanted`` grew, so another replica goes out.
    - validated: ``quorum`` results agree pairwise; ``result`` holds the canonical one and
      ``worker`` the worker that computed it.
    - done: the job's reduce folded the canonical result into the job's result.
    - failed: too many replicas ended without a result (policy ``max_attempts``) or the
      results still disagreed at ``max_replicas``.

    ``in_play`` counts the replicas assigned or returned (not timed out or failed); a unit is
    handed out while ``in_play < wanted``, by a conditional UPDATE of that counter.
    Units are cut lazily, each when a worker asks for work, sized to that worker's measured
    speed (apps.jobs.sizing); ``index`` numbers them in the order they were cut, and the units
    cut so far tile the space from its start to the highest ``stop``.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        ASSIGNED = "assigned"
        RETURNED = "returned"
        DISPUTED = "disputed"
        VALIDATED = "validated"
        DONE = "done"
        FAILED = "failed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="units")
    index = models.PositiveIntegerField()
    start = models.BigIntegerField()
    stop = models.BigIntegerField()
    cost = models.FloatField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)  # replicas that ended without a result
    wanted = models.PositiveSmallIntegerField(default=1)
    quorum = models.PositiveSmallIntegerField(default=1)
    in_play = models.PositiveSmallIntegerField(default=0)
    worker = models.ForeignKey(
        Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="units"
    )
    result = models.JSONField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="workunit_unique")]
        indexes = [
            models.Index(fields=["job", "status"]),
            models.Index(fields=["worker", "status"]),
        ]

    def __str__(self) -> str:
        return f"unit {self.index} of job {self.job_id} ({self.status})"


class UnitReplica(models.Model):
    """One worker's copy of a work unit: assigned → returned → valid | rejected, or
    assigned → timeout (deadline passed or worker gone) | failed (a result that does not fit
    the unit, or the job ended). A worker never holds two replicas of one unit."""

    class Status(models.TextChoices):
        ASSIGNED = "assigned"
        RETURNED = "returned"  # awaiting a quorum
        VALID = "valid"  # agreed with the canonical result: credited
        REJECTED = "rejected"  # outvoted: no credit, trust lowered
        TIMEOUT = "timeout"
        FAILED = "failed"

    unit = models.ForeignKey(WorkUnit, on_delete=models.CASCADE, related_name="replicas")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="replicas")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ASSIGNED)
    result = models.JSONField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=64, blank=True)
    deadline = models.DateTimeField()
    assigned_at = models.DateTimeField(auto_now_add=True)
    returned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["unit_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["unit", "worker"], name="unitreplica_unique")
        ]
        indexes = [
            models.Index(fields=["worker", "status"]),
            models.Index(fields=["status", "deadline"]),
        ]

    def __str__(self) -> str:
        return f"replica of unit {self.unit_id} on worker {self.worker_id} ({self.status})"


class AnalyticsContribution(models.Model):
    """One worker's bounded aggregates for an analytics job (kernels.analytics.local):
    requested → accepted (within the config's bounds) | rejected (outside them) | failed (the
    job ended first). A worker contributes to a job at most once."""

    class Status(models.TextChoices):
        REQUESTED = "requested"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        FAILED = "failed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="contributions")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="contributions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    result = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    returned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "worker"], name="analyticscontribution_unique")
        ]
        indexes = [models.Index(fields=["job", "status"])]

    def __str__(self) -> str:
        return f"contribution of worker {self.worker_id} to job {self.job_id} ({self.status})"

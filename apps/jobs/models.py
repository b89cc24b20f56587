"""Tenants, their members, jobs, workers and the work units of compute jobs."""

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
    result = models.JSONField(null=True, blank=True)  # a compute job's reduced result
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
    """One slice [start, stop) of a compute job's index space, run by one worker at a time."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ASSIGNED = "assigned"
        DONE = "done"
        FAILED = "failed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="units")
    index = models.PositiveIntegerField()
    start = models.BigIntegerField()
    stop = models.BigIntegerField()
    cost = models.FloatField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)  # attempts that ended without a result
    worker = models.ForeignKey(
        Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="units"
    )
    deadline = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="workunit_unique")]
        indexes = [
            models.Index(fields=["job", "status"]),
            models.Index(fields=["worker", "status"]),
            models.Index(fields=["status", "deadline"]),
        ]

    def __str__(self) -> str:
        return f"unit {self.index} of job {self.job_id} ({self.status})"

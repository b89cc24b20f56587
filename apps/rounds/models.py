"""Federated-learning rounds and the assignment of one worker in one round."""

from __future__ import annotations

from django.db import models


class Round(models.Model):
    class Status(models.TextChoices):
        SELECTING = "selecting"
        TRAINING = "training"
        AGGREGATING = "aggregating"
        CLOSED = "closed"
        FAILED = "failed"

    OPEN = (Status.SELECTING, Status.TRAINING)

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="rounds")
    number = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SELECTING)
    base_model = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, related_name="rounds_based_on"
    )
    cohort_target = models.PositiveIntegerField(help_text="reports wanted")
    min_reports = models.PositiveIntegerField(help_text="reports needed to close at the deadline")
    selected = models.PositiveIntegerField(default=0)
    participants = models.PositiveIntegerField(default=0, help_text="accepted updates")
    dropped = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    late = models.PositiveIntegerField(default=0)
    bad_frames = models.PositiveIntegerField(default=0)
    bytes_up = models.PositiveBigIntegerField(default=0)
    bytes_down = models.PositiveBigIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    aggregation_claimed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "number", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number", "attempt"], name="round_unique"),
            models.UniqueConstraint(
                fields=["job"],
                condition=models.Q(status__in=["selecting", "training", "aggregating"]),
                name="one_open_round_per_job",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} round {self.number}.{self.attempt} ({self.status})"


class Assignment(models.Model):
    class Status(models.TextChoices):
        OFFERED = "offered"
        ACCEPTED = "accepted"
        REPORTED = "reported"
        DROPPED = "dropped"
        REJECTED = "rejected"
        LATE = "late"

    PENDING = (Status.OFFERED, Status.ACCEPTED)

    fl_round = models.ForeignKey(Round, on_delete=models.CASCADE, related_name="assignments")
    worker = models.ForeignKey("jobs.Worker", on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OFFERED)
    num_samples = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    update_key = models.CharField(max_length=300, blank=True)
    update_sha256 = models.CharField(max_length=64, blank=True)
    update_bytes = models.PositiveBigIntegerField(default=0)
    aggregated = models.BooleanField(default=False)
    error_code = models.CharField(max_length=32, blank=True)
    offered_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["fl_round_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["fl_round", "worker"], name="assignment_unique")
        ]
        indexes = [models.Index(fields=["worker", "status"])]

    def __str__(self) -> str:
        return f"assignment {self.pk} ({self.status})"

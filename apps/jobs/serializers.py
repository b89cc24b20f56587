"""Input and output serializers for the jobs API."""

from __future__ import annotations

from rest_framework import serializers

from apps.jobs import selectors
from apps.jobs.analytics import privacy_summary
from apps.jobs.models import Job, Worker, WorkUnit


class JobCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=Job.Type.choices)
    kernel = serializers.CharField(max_length=64)
    config = serializers.DictField(required=False, default=dict)
    policy = serializers.DictField(required=False, default=dict)


class JobOutput(serializers.ModelSerializer):
    current_round = serializers.SerializerMethodField()
    latest_model = serializers.SerializerMethodField()
    privacy = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "name",
            "type",
            "kernel",
            "config",
            "policy",
            "status",
            "error",
            "created_at",
            "started_at",
            "ended_at",
            "current_round",
            "latest_model",
            "privacy",
            "progress",
        ]

    def get_current_round(self, job: Job) -> int | None:
        last = job.rounds.order_by("-number", "-attempt").first()
        return last.number if last else None

    def get_latest_model(self, job: Job) -> dict | None:
        model = job.model_versions.order_by("-version").first()
        if model is None:
            return None
        return {"id": model.id, "version": model.version, "metrics": model.metrics}

    def get_privacy(self, job: Job) -> dict | None:
        """An analytics job's epsilon spent and budget."""
        return privacy_summary(job)

    def get_progress(self, job: Job) -> dict | None:
        """A compute job's units by stage and the share of its space done and cut."""
        return selectors.unit_progress(job)


class WorkUnitOutput(serializers.ModelSerializer):
    """A unit with its canonical ``result`` and the number of replicas it was given."""

    replicas = serializers.IntegerField(source="replica_count", read_only=True)

    class Meta:
        model = WorkUnit
        fields = [
            "id",
            "index",
            "start",
            "stop",
            "cost",
            "status",
            "replicas",
            "quorum",
            "attempts",
            "worker",
            "result",
            "seconds",
            "error",
            "assigned_at",
            "finished_at",
        ]


class JobResultOutput(serializers.Serializer):
    """A job's result; for an analytics job also the epsilon spent and the budget."""

    job = serializers.IntegerField(source="id")
    kernel = serializers.CharField()
    config = serializers.DictField()
    result = serializers.DictField()
    ended_at = serializers.DateTimeField()
    epsilon_spent = serializers.SerializerMethodField()
    epsilon_budget = serializers.SerializerMethodField()

    def get_epsilon_spent(self, job: Job) -> float | None:
        summary = privacy_summary(job)
        return summary["epsilon_spent"] if summary else None

    def get_epsilon_budget(self, job: Job) -> float | None:
        summary = privacy_summary(job)
        return summary["epsilon_budget"] if summary else None


class KernelOutput(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    description = serializers.CharField()
    config_schema = serializers.DictField()


class WorkerOutput(serializers.ModelSerializer):
    connected = serializers.BooleanField(source="is_connected")

    class Meta:
        model = Worker
        fields = [
            "id",
            "name",
            "kind",
            "capabilities",
            "connected",
            "last_seen",
            "samples_per_s",
            "updates_accepted",
            "updates_rejected",
            "bad_frames",
            "credit",
            "trust",
            "compute_speeds",
            "is_active",
            "created_at",
        ]


class WorkerEnrollInput(serializers.Serializer):
    enrollment_key = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200, required=False, default="")
    kind = serializers.ChoiceField(choices=Worker.Kind.choices, default=Worker.Kind.PYTHON)
    capabilities = serializers.DictField(required=False, default=dict)
    consent_version = serializers.CharField(max_length=32, required=False, default="")


class WorkerEnrollOutput(serializers.Serializer):
    worker = serializers.IntegerField()
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()

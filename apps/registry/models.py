"""Model versions: every global model a job produced, its artifact, hash and lineage."""

from __future__ import annotations

from django.db import models


def artifact_path(instance: ModelVersion, filename: str) -> str:
    return f"models/job_{instance.job_id}/v{instance.version}_{instance.sha256[:16]}.f32"


class ModelVersion(models.Model):
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    fl_round = models.OneToOneField(
        "rounds.Round",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="result_model",
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    artifact = models.FileField(upload_to=artifact_path, max_length=300)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    length = models.PositiveIntegerField(help_text="number of float32 parameters")
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job_id", "version"]
        constraints = [
            models.UniqueConstraint(fields=["job", "version"], name="model_version_unique")
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} v{self.version}"

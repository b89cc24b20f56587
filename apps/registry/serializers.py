"""Output serializers for model versions."""

from __future__ import annotations

from rest_framework import serializers

from apps.registry.models import ModelVersion


class ModelVersionOutput(serializers.ModelSerializer):
    round = serializers.SerializerMethodField()
    download = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "job",
            "version",
            "round",
            "parent",
            "sha256",
            "size",
            "length",
            "metrics",
            "created_at",
            "download",
        ]

    def get_round(self, model: ModelVersion) -> int | None:
        return model.fl_round.number if model.fl_round_id else None

    def get_download(self, model: ModelVersion) -> str:
        return f"/api/v1/models/{model.id}/download/"

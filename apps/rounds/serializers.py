"""Output serializers for rounds."""

from __future__ import annotations

from rest_framework import serializers

from apps.rounds.models import Round


class RoundOutput(serializers.ModelSerializer):
    model = serializers.SerializerMethodField()

    class Meta:
        model = Round
        fields = [
            "id",
            "number",
            "attempt",
            "status",
            "selected",
            "participants",
            "dropped",
            "rejected",
            "late",
            "bad_frames",
            "bytes_up",
            "bytes_down",
            "metrics",
            "error",
            "started_at",
            "deadline",
            "ended_at",
            "model",
        ]

    def get_model(self, fl_round: Round) -> int | None:
        model = getattr(fl_round, "result_model", None)
        return model.id if model else None

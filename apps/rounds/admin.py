"""Django admin for rounds and assignments."""

from __future__ import annotations

from django.contrib import admin

from apps.rounds.models import Assignment, Round


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "job",
        "number",
        "attempt",
        "status",
        "participants",
        "dropped",
        "rejected",
        "started_at",
        "ended_at",
    ]
    list_filter = ["status"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "fl_round", "worker", "status", "num_samples", "aggregated", "error_code"]
    list_filter = ["status", "aggregated"]

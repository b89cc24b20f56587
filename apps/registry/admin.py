"""Django admin for model versions."""

from __future__ import annotations

from django.contrib import admin

from apps.registry.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "version", "fl_round", "size", "sha256", "created_at"]
    readonly_fields = ["sha256", "size", "length"]

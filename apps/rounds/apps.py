"""App configuration for apps.rounds."""

from __future__ import annotations

from django.apps import AppConfig


class RoundsConfig(AppConfig):
    name = "apps.rounds"
    label = "rounds"

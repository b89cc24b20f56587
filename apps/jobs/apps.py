"""App configuration for apps.jobs."""

from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"

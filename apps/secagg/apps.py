"""App configuration for apps.secagg."""

from __future__ import annotations

from django.apps import AppConfig


class SecaggConfig(AppConfig):
    name = "apps.secagg"
    label = "secagg"

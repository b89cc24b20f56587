"""CCGSC: a federated learning and federated computing platform."""

from __future__ import annotations

from ccgsc.celery import app as celery_app

__all__ = ["celery_app"]

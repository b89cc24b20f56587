"""CCGSC's Python worker and SDK: no Django, importable by a data owner without the server."""

from __future__ import annotations

from ccgsc_client.sdk import Client

__all__ = ["Client"]

"""``python -m ccgsc_client`` runs the worker."""

from __future__ import annotations

from ccgsc_client.worker import main

main()

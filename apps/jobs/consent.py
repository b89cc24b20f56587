"""The versions of the volunteer page's explainer that a browser worker consents to."""

from __future__ import annotations

# The version a volunteer consents to at enrollment; bump it when what is sent changes.
CONSENT_VERSION = "2"

# Versions whose explainer says that bounded analytics aggregates leave the device (version 1
# named only model updates, counts and scores). A browser worker that consented to another
# version is never asked for an analytics contribution; add each new version that still says so.
ANALYTICS_CONSENT_VERSIONS = frozenset({"2"})

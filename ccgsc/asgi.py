"""ASGI entry point: HTTP through Django, WebSockets for workers and the Director."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccgsc.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from apps.jobs.consumers import WorkerConsumer  # noqa: E402
from apps.jobs.director import DirectorConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                # Workers authenticate with their token in the hello frame, from any origin.
                path("ws/worker/", WorkerConsumer.as_asgi()),
                path(
                    "ws/director/",
                    AllowedHostsOriginValidator(AuthMiddlewareStack(DirectorConsumer.as_asgi())),
                ),
            ]
        ),
    }
)

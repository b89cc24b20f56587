"""The volunteer's side: the worker page, the JS kernels it imports, and demo data."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import FileResponse, Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.jobs import services
from apps.jobs.consent import CONSENT_VERSION
from apps.jobs.models import Tenant, Worker
from kernels import load_dataset, load_shard

KERNEL_SOURCES = {
    "softmax",
    "mlp",
    "train",  # training
    "primes",
    "montecarlo",
    "sweep",
    "compute",
    "rng",  # compute
    "analytics",
}
DEMO_DATASETS = {"digits", "iris", "wine", "breast_cancer"}
DEMO_SHARDS = 10


@require_GET
def worker_page(request, key: str = ""):
    """The page volunteers open; an enrollment link carries the tenant's key."""
    tenant = Tenant.objects.filter(enrollment_key=key).first() if key else None
    if key and tenant is None:
        raise Http404("unknown enrollment link")
    context = {"tenant": tenant, "enrollment_key": key, "consent_version": CONSENT_VERSION}
    return render(request, "worker/index.html", context)


@require_GET
def kernel_source(request, name: str):
    """The JS twin of a training kernel, served from beside its numpy reference."""
    if name not in KERNEL_SOURCES:
        raise Http404("no such kernel")
    path = settings.BASE_DIR / "kernels" / f"{name}.js"
    response = FileResponse(path.open("rb"), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response


class WorkerTokenAuthentication(BaseAuthentication):
    """``Authorization: Worker <token>``: the caller is a worker, not a user."""

    keyword = "Worker"

    def authenticate(self, request):
        header = request.headers.get("Authorization", "")
        if not header.startswith(f"{self.keyword} "):
            return None
        worker, why = services.worker_authenticate(header.removeprefix(f"{self.keyword} ").strip())
        if worker is None:
            raise AuthenticationFailed(f"worker token: {why}")
        return AnonymousUser(), worker

    def authenticate_header(self, request) -> str:
        return self.keyword


class IsWorker(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Worker)


class FeatureScalingApi(APIView):
    """How a bundled data set's raw features were standardized, so that a browser can prepare
    a volunteer's own images (8×8, ink 0–16, as in digits) the way the model expects."""

    authentication_classes = [WorkerTokenAuthentication]
    permission_classes = [IsWorker]

    @extend_schema(parameters=[OpenApiParameter("dataset", str, default="digits")])
    def get(self, request):
        dataset = request.query_params.get("dataset", "digits")
        if dataset not in DEMO_DATASETS:
            raise ValidationError({"dataset": [f"one of {sorted(DEMO_DATASETS)}"]})
        mean, std = load_dataset(dataset).scaling
        return Response({"dataset": dataset, "mean": mean.tolist(), "std": std.tolist()})


class DemoDataApi(APIView):
    """A simulation shard of a bundled data set for a volunteer in demo mode (public data)."""

    authentication_classes = [WorkerTokenAuthentication]
    permission_classes = [IsWorker]

    @extend_schema(parameters=[OpenApiParameter("dataset", str, default="digits")])
    def get(self, request):
        dataset = request.query_params.get("dataset", "digits")
        if dataset not in DEMO_DATASETS:
            raise ValidationError({"dataset": [f"one of {sorted(DEMO_DATASETS)}"]})
        index = request.auth.pk % DEMO_SHARDS
        X, y = load_shard(dataset, index, DEMO_SHARDS, "iid", 0)
        return Response(
            {
                "demo": True,
                "dataset": dataset,
                "shard": f"{index}/{DEMO_SHARDS}",
                "n": int(X.shape[0]),
                "d": int(X.shape[1]),
                "X": X.ravel().tolist(),
                "y": y.tolist(),
            }
        )

"""REST API for model versions: listing a job's models and downloading an artifact."""

from __future__ import annotations

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

from apps.jobs import selectors as job_selectors
from apps.jobs.apis import paginated
from apps.registry.models import ModelVersion
from apps.registry.serializers import ModelVersionOutput


class JobModelsApi(APIView):
    @extend_schema(responses=ModelVersionOutput(many=True))
    def get(self, request, job_id: int):
        job = job_selectors.job_get(job_selectors.tenant_for_request(request), job_id)
        models = job.model_versions.select_related("fl_round").order_by("version")
        return paginated(self, models, ModelVersionOutput)


class ModelDownloadApi(APIView):
    """The raw artifact: little-endian float32 parameters, with its SHA-256 in a header."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, model_id: int):
        tenant = job_selectors.tenant_for_request(request)
        return artifact_response(get_object_or_404(ModelVersion, pk=model_id, job__tenant=tenant))


def artifact_response(model: ModelVersion) -> FileResponse:
    """A model's artifact as a download, with its SHA-256 and length in headers."""
    try:
        artifact = model.artifact.open("rb")
    except FileNotFoundError as exc:
        raise Http404("the artifact of this model is missing from storage") from exc
    response = FileResponse(
        artifact,
        as_attachment=True,
        filename=f"job{model.job_id}-v{model.version}.f32",
        content_type="application/octet-stream",
    )
    response["X-Checksum-SHA256"] = model.sha256
    response["X-Model-Length"] = str(model.length)
    return response

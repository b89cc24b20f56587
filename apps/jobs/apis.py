"""REST API for kernels, jobs and workers: parse, authorize, call a service, answer."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from apps.jobs import selectors, services
from apps.jobs.serializers import (
    JobCreateInput,
    JobOutput,
    JobResultOutput,
    KernelOutput,
    WorkerEnrollInput,
    WorkerEnrollOutput,
    WorkerOutput,
    WorkUnitOutput,
)
from kernels import list_kernels
from kernels.compute import list_compute_kernels


def paginated(view: APIView, queryset, serializer_class) -> Response:
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def call_service(func, **kwargs):
    """Run a service; its ServiceError becomes a 400 with field errors."""
    try:
        return func(**kwargs)
    except services.ServiceError as exc:
        raise ValidationError(exc.errors) from None


class KernelListApi(APIView):
    @extend_schema(responses=KernelOutput(many=True))
    def get(self, request):
        kernels = [
            {
                "name": k.name,
                "kind": k.kind,
                "description": k.description,
                "config_schema": k.config_schema,
            }
            for k in [*list_kernels(), *list_compute_kernels()]
        ]
        return Response(KernelOutput(kernels, many=True).data)


class JobListApi(APIView):
    @extend_schema(responses=JobOutput(many=True))
    def get(self, request):
        return paginated(self, selectors.job_list(selectors.tenant_for_request(request)), JobOutput)

    @extend_schema(request=JobCreateInput, responses={201: JobOutput})
    def post(self, request):
        tenant = selectors.tenant_for_request(request)
        data = JobCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        job = call_service(
            services.job_create, tenant=tenant, user=request.user, **data.validated_data
        )
        return Response(JobOutput(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(APIView):
    @extend_schema(responses=JobOutput)
    def get(self, request, job_id: int):
        job = selectors.job_get(selectors.tenant_for_request(request), job_id)
        return Response(JobOutput(job).data)


class JobUnitsApi(APIView):
    @extend_schema(responses=WorkUnitOutput(many=True))
    def get(self, request, job_id: int):
        job = selectors.job_get(selectors.tenant_for_request(request), job_id)
        return paginated(self, selectors.unit_list(job), WorkUnitOutput)


class JobResultApi(APIView):
    """A compute job's reduced result or an analytics job's release; 404 until the job has
    completed."""

    @extend_schema(responses=JobResultOutput)
    def get(self, request, job_id: int):
        job = selectors.job_result(selectors.tenant_for_request(request), job_id)
        return Response(JobResultOutput(job).data)


class _JobActionApi(APIView):
    service = None

    @extend_schema(request=None, responses=JobOutput)
    def post(self, request, job_id: int):
        job = selectors.job_get(selectors.tenant_for_request(request), job_id)
        job = call_service(type(self).service, job_id=job.id)
        return Response(JobOutput(job).data)


class JobStartApi(_JobActionApi):
    service = staticmethod(services.job_start)


class JobPauseApi(_JobActionApi):
    service = staticmethod(services.job_pause)


class JobCancelApi(_JobActionApi):
    service = staticmethod(services.job_cancel)


class WorkerListApi(APIView):
    @extend_schema(responses=WorkerOutput(many=True))
    def get(self, request):
        tenant = selectors.tenant_for_request(request)
        return paginated(self, selectors.worker_list(tenant), WorkerOutput)


class EnrollThrottle(AnonRateThrottle):
    rate = "600/minute"


class WorkerEnrollApi(APIView):
    """Authenticated by the tenant's enrollment key in the body, not by a user token."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [EnrollThrottle]

    @extend_schema(request=WorkerEnrollInput, responses={201: WorkerEnrollOutput})
    def post(self, request):
        data = WorkerEnrollInput(data=request.data)
        data.is_valid(raise_exception=True)
        worker, token = call_service(services.worker_enroll, **data.validated_data)
        out = {"worker": worker.id, "token": token, "expires_at": worker.token_expires_at}
        return Response(WorkerEnrollOutput(out).data, status=status.HTTP_201_CREATED)

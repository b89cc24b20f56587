"""URL routes: admin, REST API v1, its schema and docs, the Director."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.jobs import apis as job_apis
from apps.jobs import volunteer
from apps.registry import apis as registry_apis
from apps.rounds import apis as round_apis

api_v1 = [
    path("kernels/", job_apis.KernelListApi.as_view(), name="kernel-list"),
    path("jobs/", job_apis.JobListApi.as_view(), name="job-list"),
    path("jobs/<int:job_id>/", job_apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/start/", job_apis.JobStartApi.as_view(), name="job-start"),
    path("jobs/<int:job_id>/pause/", job_apis.JobPauseApi.as_view(), name="job-pause"),
    path("jobs/<int:job_id>/cancel/", job_apis.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<int:job_id>/units/", job_apis.JobUnitsApi.as_view(), name="job-units"),
    path("jobs/<int:job_id>/result/", job_apis.JobResultApi.as_view(), name="job-result"),
    path("jobs/<int:job_id>/rounds/", round_apis.JobRoundsApi.as_view(), name="job-rounds"),
    path("jobs/<int:job_id>/models/", registry_apis.JobModelsApi.as_view(), name="job-models"),
    path(
        "models/<int:model_id>/download/",
        registry_apis.ModelDownloadApi.as_view(),
        name="model-download",
    ),
    path("workers/", job_apis.WorkerListApi.as_view(), name="worker-list"),
    path("workers/enroll/", job_apis.WorkerEnrollApi.as_view(), name="worker-enroll"),
    path("workers/demo-data/", volunteer.DemoDataApi.as_view(), name="worker-demo-data"),
    path(
        "workers/feature-scaling/",
        volunteer.FeatureScalingApi.as_view(),
        name="worker-feature-scaling",
    ),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/director/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("director/", include("apps.jobs.director_urls")),
    path("worker/", volunteer.worker_page, name="worker-page"),
    path("worker/join/<str:key>/", volunteer.worker_page, name="worker-join"),
    path("worker/kernels/<str:name>.js", volunteer.kernel_source, name="worker-kernel"),
]

"""Director routes."""

from __future__ import annotations

from django.urls import path

from apps.jobs import director

app_name = "director"
urlpatterns = [
    path("", director.job_list, name="job-list"),
    path("jobs/<int:job_id>/", director.job_detail, name="job-detail"),
    path("workers/", director.worker_list, name="worker-list"),
    path("models/<int:model_id>/download/", director.model_download, name="model-download"),
]

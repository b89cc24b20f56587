"""The Director: server-rendered ops pages for staff, refreshed live over a Channels group."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import (
    Case,
    Count,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from apps.jobs import selectors
from apps.jobs.analytics import privacy_summary
from apps.jobs.charts import is_number, line_chart
from apps.jobs.models import AnalyticsContribution, Job, UnitReplica, Worker
from apps.registry.apis import artifact_response
from apps.registry.models import ModelVersion
from apps.rounds.models import Round
from kernels.compute import list_compute_kernels

JOBS_SHOWN = 200
COMPUTE_KERNELS = frozenset(kernel.name for kernel in list_compute_kernels())
ROUNDS_SHOWN = 200
ROUNDS_CHARTED = 2000
MODELS_SHOWN = 100
WORKERS_SHOWN = 1000
THROUGHPUT_SHOWN = 500
CHART_SIZE = {"width": 560, "height": 260}

# Reads. They live here rather than in selectors.py because only these pages use them.


def _job_rows() -> list[Job]:
    """Recent jobs, each with its latest round and latest metrics, in one query."""
    latest_round = Round.objects.filter(job=OuterRef("pk")).order_by("-number", "-attempt")
    closed = latest_round.filter(status=Round.Status.CLOSED)
    latest_model = ModelVersion.objects.filter(job=OuterRef("pk")).order_by("-version")
    jobs = list(
        Job.objects.select_related("tenant")
        .annotate(
            round_number=Subquery(latest_round.values("number")[:1]),
            round_attempt=Subquery(latest_round.values("attempt")[:1]),
            round_status=Subquery(latest_round.values("status")[:1]),
            closed_metrics=Subquery(closed.values("metrics")[:1]),
            model_metrics=Subquery(latest_model.values("metrics")[:1]),
        )
        .order_by("-id")[:JOBS_SHOWN]
    )
    for job in jobs:
        job.latest_accuracy, job.accuracy_source = latest_accuracy(
            job.closed_metrics, job.model_metrics
        )
    return jobs


def latest_accuracy(round_metrics: object, model_metrics: object) -> tuple[float | None, str]:
    """Held-out accuracy of the latest closed round, else of the latest model, else training's."""
    for metrics, key, source in (
        (round_metrics, "accuracy", "held-out"),
        (model_metrics, "accuracy", "held-out"),
        (round_metrics, "train_accuracy", "training"),
    ):
        value = metrics.get(key) if isinstance(metrics, dict) else None
        if is_number(value):
            return float(value), source
    return None, ""


def _round_rows(job: Job) -> tuple[list[Round], int]:
    """The newest rounds (all attempts), newest first, each with its duration."""
    rounds = job.rounds.order_by("-number", "-attempt")
    rows = list(rounds[:ROUNDS_SHOWN])
    now = timezone.now()
    for fl_round in rows:
        fl_round.duration = duration_text((fl_round.ended_at or now) - fl_round.started_at)
    total = len(rows) if len(rows) < ROUNDS_SHOWN else rounds.count()
    return rows, total


def _charts(job: Job) -> dict[str, str]:
    """Loss and accuracy per closed round: the held-out evaluation and the workers' training."""
    newest = job.rounds.filter(status=Round.Status.CLOSED).order_by("-number", "-attempt")
    closed = list(newest.values_list("number", "metrics")[:ROUNDS_CHARTED])[::-1]
    return {
        "loss": line_chart(
            {"loss": _series(closed, "loss"), "train loss": _series(closed, "train_loss")},
            y_label="loss",
            x_label="round",
            title=f"Loss per round, job {job.pk}",
            **CHART_SIZE,
        ),
        "accuracy": line_chart(
            {
                "accuracy": _series(closed, "accuracy"),
                "train accuracy": _series(closed, "train_accuracy"),
            },
            y_label="accuracy",
            x_label="round",
            title=f"Accuracy per round, job {job.pk}",
            **CHART_SIZE,
        ),
    }


def _series(rows: list[tuple[int, object]], key: str) -> list[tuple[float, float]]:
    return [
        (float(number), float(metrics[key]))
        for number, metrics in rows
        if isinstance(metrics, dict) and is_number(metrics.get(key))
    ]


def _model_rows(job: Job) -> tuple[list[ModelVersion], int]:
    models = job.model_versions.select_related("fl_round").order_by("-version")
    rows = list(models[:MODELS_SHOWN])
    return rows, len(rows) if len(rows) < MODELS_SHOWN else models.count()


def _throughput_rows(job: Job) -> tuple[list[dict], int]:
    """Per worker, what it did on this job: replicas returned, valid and rejected, compute
    seconds, and the credit earned here (each valid replica earns its unit's cost), with the
    worker's overall credit and trust; busiest first, in one query."""
    replicas = UnitReplica.Status
    rows = list(
        UnitReplica.objects.filter(unit__job=job)
        .values("worker_id", "worker__name", "worker__credit", "worker__trust")
        .annotate(
            returned=Count("id", filter=Q(returned_at__isnull=False)),
            valid=Count("id", filter=Q(status=replicas.VALID)),
            rejected=Count("id", filter=Q(status=replicas.REJECTED)),
            seconds=Sum("seconds"),
            earned=Sum("unit__cost", filter=Q(status=replicas.VALID)),
        )
        .order_by("-returned", "worker_id")[: THROUGHPUT_SHOWN + 1]
    )
    return [
        {
            "id": row["worker_id"],
            "name": row["worker__name"] or f"worker {row['worker_id']}",
            "returned": row["returned"],
            "valid": row["valid"],
            "rejected": row["rejected"],
            "seconds": row["seconds"] or 0.0,
            "earned": row["earned"] or 0.0,
            "credit": row["worker__credit"],
            "trust": row["worker__trust"],
        }
        for row in rows[:THROUGHPUT_SHOWN]
    ], len(rows)


def _contribution_counts(job: Job) -> dict[str, int]:
    """An analytics job's contributions by outcome, in one query."""
    status = AnalyticsContribution.Status
    return job.contributions.aggregate(
        accepted=Count("id", filter=Q(status=status.ACCEPTED)),
        rejected=Count("id", filter=Q(status=status.REJECTED)),
        pending=Count("id", filter=Q(status=status.REQUESTED)),
        failed=Count("id", filter=Q(status=status.FAILED)),
    )


def _worker_rows() -> list[Worker]:
    """Connected workers first: with many enrolled, those are the ones worth a look. Each
    carries ``compute_text``: its compute slots and measured speeds."""
    offline = Case(
        When(channel_name="", then=Value(1)), default=Value(0), output_field=IntegerField()
    )
    workers = list(
        Worker.objects.select_related("tenant")
        .annotate(offline=offline)
        .order_by("offline", "id")[:WORKERS_SHOWN]
    )
    for worker in workers:
        worker.compute_text = compute_text(worker.capabilities, worker.compute_speeds)
    return workers


def compute_text(capabilities: dict, speeds: dict) -> str:
    """ "2 slots; primes 1.25/s" : a worker's compute slots (when it runs compute kernels) and
    its measured speed per kernel, in cost units per second."""
    if not any(k in capabilities.get("kernels", []) for k in COMPUTE_KERNELS):
        return ""
    slots = capabilities.get("slots", 1)
    parts = [f"{slots} slot{'s' if slots != 1 else ''}"]
    parts += [f"{kernel} {speed:.2f}/s" for kernel, speed in sorted(speeds.items())]
    return "; ".join(parts)


def _worker_counts() -> dict[str, int]:
    return Worker.objects.aggregate(
        total=Count("id"),
        connected=Count("id", filter=~Q(channel_name="")),
        active=Count("id", filter=Q(is_active=True)),
    )


def duration_text(elapsed: timedelta) -> str:
    """A short human duration: 850 ms, 12.3 s, 4 min 05 s, 2 h 07 min."""
    seconds = max(elapsed.total_seconds(), 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _fresh_after() -> datetime:
    return timezone.now() - timedelta(seconds=settings.CCGSC_WORKER_TIMEOUT_S)


# Views.


@staff_member_required
def job_list(request: HttpRequest) -> HttpResponse:
    context = {"jobs": _job_rows(), "limit": JOBS_SHOWN, "nav": "jobs"}
    return render(request, "director/job_list.html", context)


@staff_member_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    """One job: rounds, curves and models for training; units and per-worker throughput for
    compute; the release and its privacy cost for analytics."""
    job = get_object_or_404(Job.objects.select_related("tenant", "created_by"), pk=job_id)
    context = {
        "job": job,
        "config": _pretty(job.config),
        "policy": _pretty(job.policy),
        "nav": "jobs",
    }
    if job.type == Job.Type.COMPUTE:
        throughput, throughput_total = _throughput_rows(job)
        context |= {
            "units": selectors.unit_progress(job),
            "throughput": throughput,
            "throughput_more": throughput_total > len(throughput),
            "result": _pretty(job.result) if job.status == Job.Status.COMPLETED else None,
        }
    elif job.type == Job.Type.ANALYTICS:
        context |= {
            "privacy": privacy_summary(job),
            "contributions": _contribution_counts(job),
            "released": _pretty(job.result) if job.result is not None else None,
        }
    else:
        rounds, rounds_total = _round_rows(job)
        models, models_total = _model_rows(job)
        context |= {
            "charts": _charts(job),
            "rounds": rounds,
            "rounds_total": rounds_total,
            "models": models,
            "models_total": models_total,
        }
    return render(request, "director/job_detail.html", context)


@staff_member_required
def worker_list(request: HttpRequest) -> HttpResponse:
    context = {
        "workers": _worker_rows(),
        "counts": _worker_counts(),
        "fresh_after": _fresh_after(),
        "limit": WORKERS_SHOWN,
        "nav": "workers",
    }
    return render(request, "director/worker_list.html", context)


@staff_member_required
def model_download(request: HttpRequest, model_id: int) -> FileResponse:
    """The artifact for any staff member, tenant member or not (the API needs membership)."""
    return artifact_response(get_object_or_404(ModelVersion, pk=model_id))


class DirectorConsumer(AsyncJsonWebsocketConsumer):
    """Relays job-changed events to staff pages, which then reload what they show."""

    group = "director"

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_active or not user.is_staff:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_changed(self, event: dict) -> None:
        await self.send_json({"type": "job.changed", "job": event["job"]})

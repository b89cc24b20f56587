"""Reads for tenants, jobs, work units and workers, always scoped to one tenant."""

from __future__ import annotations

import math

from django.db.models import Count, F, Q, QuerySet, Sum
from django.shortcuts import get_object_or_404
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS

from apps.jobs.models import Job, Membership, Tenant, Worker, WorkUnit
from kernels.compute import get_compute_kernel

TENANT_HEADER = "X-CCGSC-Tenant"


def membership_for_request(request) -> Membership:
    """The caller's membership: their only one, or the one for the tenant the header names."""
    memberships = Membership.objects.filter(user=request.user).select_related("tenant")
    slug = request.headers.get(TENANT_HEADER)
    if slug:
        memberships = memberships.filter(tenant__slug=slug)
    found = list(memberships[:2])
    if not found:
        raise PermissionDenied("you are not a member of that tenant" if slug else "no tenant")
    if len(found) > 1:
        raise PermissionDenied(f"you belong to several tenants: name one in {TENANT_HEADER}")
    return found[0]


def tenant_for_request(request) -> Tenant:
    """The caller's tenant; a request that changes state also needs a role that may write."""
    membership = membership_for_request(request)
    if request.method not in SAFE_METHODS and membership.role == Membership.Role.VIEWER:
        raise PermissionDenied("viewers may read, not change, this tenant's jobs")
    return membership.tenant


def job_list(tenant: Tenant) -> QuerySet:
    return Job.objects.filter(tenant=tenant).order_by("-id")


def job_get(tenant: Tenant, job_id: int) -> Job:
    return get_object_or_404(Job, pk=job_id, tenant=tenant)


def worker_list(tenant: Tenant) -> QuerySet:
    return Worker.objects.filter(tenant=tenant).order_by("id")


def unit_list(job: Job) -> QuerySet:
    return (
        WorkUnit.objects.filter(job=job).annotate(replica_count=Count("replicas")).order_by("index")
    )


def unit_progress(job: Job) -> dict[str, int] | None:
    """A compute job's units by stage, in one query, and the share of its space finished
    (``percent``) and cut so far (``cut_percent``; units are cut lazily, so their number grows
    while the job runs). None for other jobs."""
    if job.type != Job.Type.COMPUTE:
        return None
    units = WorkUnit.Status
    finished = Q(status__in=[units.DONE, units.VALIDATED])
    counts = job.units.aggregate(
        total=Count("id"),
        finished=Count("id", filter=finished),
        in_flight=Count("id", filter=Q(status__in=[units.ASSIGNED, units.RETURNED])),
        disputed=Count("id", filter=Q(status=units.DISPUTED)),
        failed=Count("id", filter=Q(status=units.FAILED)),
        pending=Count("id", filter=Q(status=units.PENDING)),
        finished_span=Sum(F("stop") - F("start"), filter=finished),
        cut_span=Sum(F("stop") - F("start")),
    )
    start, stop = get_compute_kernel(job.kernel).space(job.config)
    size = max(stop - start, 1)
    counts["percent"] = math.floor(100 * (counts.pop("finished_span") or 0) / size)
    counts["cut_percent"] = math.floor(100 * (counts.pop("cut_span") or 0) / size)
    return counts


def job_result(tenant: Tenant, job_id: int) -> Job:
    """A completed compute or analytics job (with its result); 404 for any other job."""
    return get_object_or_404(
        Job,
        pk=job_id,
        tenant=tenant,
        type__in=[Job.Type.COMPUTE, Job.Type.ANALYTICS],
        status=Job.Status.COMPLETED,
    )

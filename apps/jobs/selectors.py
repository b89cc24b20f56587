"""Reads for tenants, jobs and workers, always scoped to one tenant."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from rest_framework.exceptions import PermissionDenied

from apps.jobs.models import Job, Membership, Tenant, Worker

TENANT_HEADER = "X-CCGSC-Tenant"


def tenant_for_request(request) -> Tenant:
    """The caller's tenant: their only membership, or the one the tenant header names."""
    memberships = Membership.objects.filter(user=request.user).select_related("tenant")
    slug = request.headers.get(TENANT_HEADER)
    if slug:
        memberships = memberships.filter(tenant__slug=slug)
    found = list(memberships[:2])
    if not found:
        raise PermissionDenied("you are not a member of that tenant" if slug else "no tenant")
    if len(found) > 1:
        raise PermissionDenied(f"you belong to several tenants: name one in {TENANT_HEADER}")
    return found[0].tenant


def job_list(tenant: Tenant) -> QuerySet:
    return Job.objects.filter(tenant=tenant).order_by("-id")


def job_get(tenant: Tenant, job_id: int) -> Job:
    return get_object_or_404(Job, pk=job_id, tenant=tenant)


def worker_list(tenant: Tenant) -> QuerySet:
    return Worker.objects.filter(tenant=tenant).order_by("id")

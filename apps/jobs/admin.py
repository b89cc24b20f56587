"""Django admin for tenants, memberships, jobs, work units and workers."""

from __future__ import annotations

from django.contrib import admin

from apps.jobs.models import Job, Membership, Tenant, UnitReplica, Worker, WorkUnit


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "max_workers", "max_running_jobs", "created_at"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role"]
    list_filter = ["role", "tenant"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "tenant", "type", "kernel", "status", "created_at"]
    list_filter = ["status", "type", "tenant"]
    search_fields = ["name"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "tenant",
        "kind",
        "channel_name",
        "last_seen",
        "updates_accepted",
        "updates_rejected",
        "credit",
        "trust",
        "is_active",
    ]
    list_filter = ["kind", "is_active", "tenant"]
    search_fields = ["name"]
    exclude = ["token_hash"]
    readonly_fields = ["channel_name", "connected_at", "last_seen", "token_expires_at"]


@admin.register(WorkUnit)
class WorkUnitAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "index", "start", "stop", "status", "in_play", "wanted", "worker"]
    list_filter = ["status"]
    raw_id_fields = ["job", "worker"]


@admin.register(UnitReplica)
class UnitReplicaAdmin(admin.ModelAdmin):
    list_display = ["id", "unit", "worker", "status", "seconds", "deadline", "returned_at"]
    list_filter = ["status"]
    raw_id_fields = ["unit", "worker"]

"""The Director: server-rendered ops pages for staff, refreshed live over a Channels group."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, render

from apps.jobs.models import Job, Worker


@staff_member_required
def job_list(request):
    jobs = Job.objects.select_related("tenant").order_by("-id")[:200]
    return render(request, "director/job_list.html", {"jobs": jobs})


@staff_member_required
def job_detail(request, job_id: int):
    job = get_object_or_404(Job, pk=job_id)
    return render(request, "director/job_detail.html", {"job": job})


@staff_member_required
def worker_list(request):
    workers = Worker.objects.select_related("tenant").order_by("id")[:1000]
    return render(request, "director/worker_list.html", {"workers": workers})


class DirectorConsumer(AsyncJsonWebsocketConsumer):
    """Relays job-changed events to staff pages, which then reload what they show."""

    group = "director"

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_staff:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_changed(self, event: dict) -> None:
        await self.send_json({"type": "job.changed", "job": event["job"]})

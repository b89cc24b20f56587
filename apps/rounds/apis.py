"""REST API for the rounds of a job."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

from apps.jobs import selectors as job_selectors
from apps.jobs.apis import paginated
from apps.rounds.selectors import round_list
from apps.rounds.serializers import RoundOutput


class JobRoundsApi(APIView):
    @extend_schema(responses=RoundOutput(many=True))
    def get(self, request, job_id: int):
        job = job_selectors.job_get(job_selectors.tenant_for_request(request), job_id)
        return paginated(self, round_list(job), RoundOutput)

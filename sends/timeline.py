from rest_framework.views import APIView

from accounts.models import Scope
from fluxomail.api import NotFound


class SendListView(APIView):
    """GET /api/v1/sends (placeholder until the timeline lands)."""

    required_scopes = (Scope.READ_SENDS,)

    def get(self, request):
        raise NotFound()


class SendDetailView(APIView):
    """GET /api/v1/sends/{id} (placeholder until the timeline lands)."""

    required_scopes = (Scope.READ_SENDS,)

    def get(self, request, send_id: str):
        raise NotFound()

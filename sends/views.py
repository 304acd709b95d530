from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from fluxomail.api import ApiError


class SendEmailView(APIView):
    """POST /api/v1/emails/send and /send-global. Placeholder until the send API lands."""

    endpoint = "send"
    required_scopes = (Scope.SEND_EMAIL,)

    def post(self, request) -> Response:
        error = ApiError("Sending is not implemented yet")
        error.status_code, error.code = 501, "not_implemented"
        raise error

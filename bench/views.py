from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope


class BaselineView(APIView):
    """The stack's limit: the send API's key authentication, scope check, JSON parsing and body
    validation with the same serializer, then a response of the same shape. Writes nothing and
    sends nothing."""

    required_scopes = (Scope.SEND_EMAIL,)

    def post(self, request) -> Response:
        from sends.serializers import SendEmailSerializer

        serializer = SendEmailSerializer(
            data=request.data, context={"organization": request.user.organization}
        )
        serializer.is_valid(raise_exception=True)
        return Response(
            {"sendId": "sends_baseline", "status": "sent", "messageId": "<b@x>", "reused": False}
        )


class SeedBodySerializer(serializers.Serializer):
    to = serializers.EmailField()
    subject = serializers.CharField()
    content = serializers.CharField()
    htmlContent = serializers.CharField(required=False)  # noqa: N815 (the wire's name)


class DrfReferenceView(APIView):
    """Reference A, DRF itself: parse the seed body and validate it with a trivial serializer,
    no authentication, no permission, no throttle; writes and sends nothing."""

    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()

    def post(self, request) -> Response:
        serializer = SeedBodySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(
            {"sendId": "sends_drf", "status": "sent", "messageId": "<a@x>", "reused": False}
        )

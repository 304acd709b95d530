"""Two tiny API views that exercise authentication and scopes on their own."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope


class SendScopeView(APIView):
    required_scopes = (Scope.SEND_EMAIL,)

    def post(self, request):
        return Response(
            {"organization": request.user.organization.slug, "keys": list(request.data)}
        )


class ReadScopeView(APIView):
    required_scopes = (Scope.READ_SENDS,)

    def get(self, request):
        return Response({"organization": request.user.organization.slug})


class BrokenView(APIView):
    required_scopes = (Scope.SEND_EMAIL,)

    def post(self, request):
        raise RuntimeError("SELECT secret FROM somewhere WHERE password='hunter2'")


urlpatterns = [
    path("api/v1/send-probe", SendScopeView.as_view()),
    path("api/v1/read-probe", ReadScopeView.as_view()),
    path("api/v1/broken", BrokenView.as_view()),
]

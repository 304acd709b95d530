"""POST /api/v1/tokens: a short-lived token for a browser (SPEC.md section 8)."""

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import tokens
from accounts.models import ApiKey, Scope
from fluxomail.api import MissingScope


class TokenRequest(serializers.Serializer):
    ttlSeconds = serializers.IntegerField(  # noqa: N815 (wire name)
        min_value=1, max_value=tokens.MAX_TTL_SECONDS, default=tokens.DEFAULT_TTL_SECONDS
    )
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.values),
        required=False,
        allow_empty=False,
        max_length=len(Scope.values),
    )

    def validate(self, attrs: dict) -> dict:
        # A misspelt field would otherwise mint a token other than the one asked for.
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


def _iso(moment) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TokenView(APIView):
    """Any valid key mints tokens, with its own scopes or fewer: a token can never do more than
    its key (and only GET requests). A token cannot mint tokens (tokens are refused on POST)."""

    required_scopes = ()

    def post(self, request: Request) -> Response:
        query = TokenRequest(data=request.data)
        query.is_valid(raise_exception=True)
        key: ApiKey = request.auth
        scopes = query.validated_data.get("scopes", key.scopes)
        for scope in scopes:
            if not key.has_scope(scope):
                raise MissingScope(scope)
        token, expires_at = tokens.issue(
            key, scopes=sorted(set(scopes)), ttl_seconds=query.validated_data["ttlSeconds"]
        )
        # A credential: no cache may keep the answer.
        return Response(
            {"token": token, "expiresAt": _iso(expires_at)}, headers={"Cache-Control": "no-store"}
        )

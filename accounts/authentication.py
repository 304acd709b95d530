from rest_framework.authentication import BaseAuthentication

from accounts import tokens
from accounts.models import ApiKey
from fluxomail.api import InvalidKey


class ApiClient:
    """request.user for API requests: the organization acting through one key."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, key: ApiKey):
        self.key = key
        self.organization = key.organization

    def __str__(self) -> str:
        return f"api key {self.key.prefix}"


def token_from_headers(headers) -> str | None:
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidKey()
        return token.strip()
    token = headers.get("X-Api-Key")
    if token is not None:
        return token.strip()
    return None


def credential(request) -> str | None:
    """The credential a request sends: a header, or the `token` query parameter on views that
    take it (`accepts_query_token`: the event stream, whose EventSource clients cannot send
    headers). A header wins when both are sent."""
    token = token_from_headers(request.headers)
    if token is None:
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if getattr(view, "accepts_query_token", False):
            token = request.query_params.get("token")
    return token


class ApiKeyAuthentication(BaseAuthentication):
    """An API key (`flx_…`) or a short-lived token (`flxt_…`, GET only) in `Authorization:
    Bearer`, `x-api-key` or, where the view allows it, `?token=`; anything else that is sent is
    a 401. request.auth is the ApiKey, or the token's TokenGrant: both answer has_scope() and
    name the organization."""

    def authenticate(self, request):
        token = credential(request)
        if token is None:
            return None
        if token.startswith(tokens.TOKEN_PREFIX):
            grant = tokens.grant_for(token) if request.method in tokens.TOKEN_METHODS else None
            if grant is None:
                raise InvalidKey()
            grant.key.touch()
            return ApiClient(grant.key), grant
        key = ApiKey.objects.for_token(token)
        if key is None:
            raise InvalidKey()
        key.touch()
        return ApiClient(key), key

    def authenticate_header(self, request) -> str:
        return "Bearer"

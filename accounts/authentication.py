from rest_framework.authentication import BaseAuthentication

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


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` or `x-api-key: <key>`; anything else that is sent is a 401."""

    def authenticate(self, request):
        token = token_from_headers(request.headers)
        if token is None:
            return None
        key = ApiKey.objects.for_token(token)
        if key is None:
            raise InvalidKey()
        key.touch()
        return ApiClient(key), key

    def authenticate_header(self, request) -> str:
        return "Bearer"

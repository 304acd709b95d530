from rest_framework.permissions import BasePermission

from fluxomail.api import InvalidKey, MissingScope, TenantPaused


class HasScopes(BasePermission):
    """Key → scope → paused, in that order. Views name their scopes in `required_scopes`."""

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if key is None:
            raise InvalidKey()
        for scope in getattr(view, "required_scopes", ()):
            if not key.has_scope(scope):
                raise MissingScope(scope)
        if key.organization.paused:
            raise TenantPaused()
        return True

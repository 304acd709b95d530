"""GET/POST /api/v1/preferences and POST /api/v1/contacts/sync (SPEC.md section 10).

Preferences answer to the recipient's own token (no key) or to `email` with a key holding
`preferences_read` (GET) or `preferences_manage` (POST). Contacts sync needs `contacts_write`.
"""

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization, Scope
from accounts.permissions import HasScopes
from contacts import services, sync, tokens
from contacts.fields import StrictBooleanField, StrictCharField, refuse_unknown
from contacts.models import Category, Contact
from fluxomail.addresses import normalize
from fluxomail.api import NotFound, ValidationFailed
from fluxomail.parsers import JSONParser

MAX_SUBSCRIPTIONS = 100


class RecipientOrKey(HasScopes):
    """The recipient's own token (no key needed), or a key with the view's scope."""

    def has_permission(self, request, view) -> bool:
        if view.token_given(request):
            return True
        return super().has_permission(request, view)


class Who(serializers.Serializer):
    """`token` (the recipient) or `email` (a caller with a key): exactly one."""

    token = StrictCharField(required=False, max_length=tokens.MAX_LENGTH, trim_whitespace=False)
    # RFC 5321's longest path; also keeps GET's request line bounded (see the OpenAPI).
    email = StrictCharField(required=False, max_length=254)

    def validate_email(self, value: str) -> str:
        try:
            return normalize(value)
        except ValueError:
            raise serializers.ValidationError("Enter a valid email address.") from None

    def validate(self, attrs: dict) -> dict:
        if ("token" in attrs) == ("email" in attrs):
            message = "Give either token or email."
            raise serializers.ValidationError({"token": [message], "email": [message]})
        return attrs


class SubscriptionChoice(serializers.Serializer):
    categoryKey = StrictCharField(max_length=50)  # noqa: N815 (wire name)
    subscribed = StrictBooleanField()


class PreferencesUpdate(Who):
    subscriptions = serializers.ListField(child=SubscriptionChoice(), max_length=MAX_SUBSCRIPTIONS)
    subscribed = StrictBooleanField(required=False)

    def to_internal_value(self, data):
        refuse_unknown(self, data)
        return super().to_internal_value(data)


class PreferencesView(APIView):
    permission_classes = [RecipientOrKey]

    @property
    def required_scopes(self) -> tuple[str, ...]:
        if self.request.method == "POST":
            return (Scope.PREFERENCES_MANAGE,)
        return (Scope.PREFERENCES_READ,)

    def token_given(self, request: Request) -> bool:
        if request.method == "POST":
            return isinstance(request.data, dict) and "token" in request.data
        return "token" in request.query_params

    def _organization_and_address(self, request: Request, who: dict) -> tuple[Organization, str]:
        if "token" in who:
            try:
                target = tokens.read(who["token"])
            except tokens.BadToken:
                raise ValidationFailed(
                    "Invalid token", details={"token": ["Invalid token."]}
                ) from None
            return target.organization, target.address
        return request.user.organization, who["email"]

    def get(self, request: Request) -> Response:
        query = Who(data=request.query_params.dict())
        refuse_unknown(query, request.query_params.dict())
        query.is_valid(raise_exception=True)
        organization, address = self._organization_and_address(request, query.validated_data)
        contact = Contact.objects.for_org(organization).filter(email=address).first()
        if contact is None:
            raise NotFound("Unknown contact")
        categories = list(Category.objects.for_org(organization))
        state = services.preferences(contact, categories)
        return Response(
            {
                "contact": {"id": contact.public_id, "email": contact.email},
                "categories": [
                    {"key": c.key, "name": c.name, "description": c.description} for c in categories
                ],
                "subscriptions": state["subscriptions"],
                "subscribed": state["subscribed"],
            }
        )

    def post(self, request: Request) -> Response:
        body = PreferencesUpdate(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        organization, address = self._organization_and_address(request, data)
        categories = {c.key: c for c in Category.objects.for_org(organization)}
        unknown = [
            choice["categoryKey"]
            for choice in data["subscriptions"]
            if choice["categoryKey"] not in categories
        ]
        if unknown:
            messages = [f"Unknown categoryKey {key!r}." for key in unknown]
            raise ValidationFailed(
                f"Unknown categoryKey: {', '.join(unknown)}", details={"subscriptions": messages}
            )
        contacts = Contact.objects.for_org(organization)
        if "token" in data:
            # The recipient acting on a mail of this organization: the contact may be new.
            contact, _ = contacts.get_or_create(
                organization=organization, email=address, defaults={"source": "recipient"}
            )
        else:
            contact = contacts.filter(email=address).first()
            if contact is None:
                raise NotFound("Unknown contact")
        services.set_preferences(
            contact,
            actor="recipient (preferences API)" if "token" in data else f"api key {request.auth}",
            subscribed=data.get("subscribed"),
            categories={
                categories[c["categoryKey"]]: c["subscribed"] for c in data["subscriptions"]
            },
        )
        return Response({"ok": True})


class SyncJSONParser(JSONParser):
    """Up to 1,000 contacts of a few dozen values each: the send API's bound of 1,000 values
    would refuse a full batch. Still bounded before anything is parsed."""

    max_values = 60_000


class ContactsSyncView(APIView):
    required_scopes = (Scope.CONTACTS_WRITE,)
    parser_classes = [SyncJSONParser]

    def post(self, request: Request) -> Response:
        result = sync.run(
            organization=request.user.organization,
            body=request.data,
            idempotency_header=request.headers.get(sync.IDEMPOTENCY_HEADER),
        )
        response = Response(result.body)
        if result.key is not None:
            response[sync.IDEMPOTENCY_HEADER] = result.key
        if result.replayed:
            response["Idempotency-Replayed"] = "true"
        return response

"""POST /api/v1/emails/send and /api/v1/emails/send-global (SPEC.md section 3).

Check order: key (401) → scope (403) → paused (403) [DRF authentication and permission] →
JSON parse (400/411/413/415) → idempotency replay or conflict (200 / 422 / 409; the key is
claimed here, and released if a 429, 503 or 400 follows) → rate limit (429) → validation (400) →
send. Every answer, errors included, gets the Idempotency-Key echo and the rate-limit headers and
is counted in usage (401s have no organization and are not).
"""

import time

from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from fluxomail import parsers
from fluxomail.api import ValidationFailed
from sends import idempotency, ratelimit, services
from sends.models import Send
from sends.serializers import SendEmailSerializer
from usage import recording


class SendEmailView(APIView):
    """One view for both paths; `endpoint` names the path (`send` or `send-global`)."""

    endpoint = "send"
    required_scopes = (Scope.SEND_EMAIL,)

    def dispatch(self, request, *args, **kwargs):
        self.started = time.monotonic()
        self.idempotency_key: str | None = None
        self.rate_state: ratelimit.RateState | None = None
        self.rate_counted = False
        return super().dispatch(request, *args, **kwargs)

    def post(self, request) -> Response:
        organization = request.user.organization
        key = request.auth
        data = self._parse(request)

        idem = idempotency.from_request(request.headers, data, self.endpoint)
        claim = None
        if idem is not None:
            self.idempotency_key = idem.key
            # Before the rate limit: replays, 422s and 409s (a lost race included) never count.
            claimed = idempotency.claim(organization, idem)
            if isinstance(claimed, idempotency.Replay):
                return self._respond(request, claimed.body, replayed=True)
            claim = claimed

        try:
            self.rate_counted = True  # the rate-limit step is reached: no peek afterwards
            self.rate_state = ratelimit.hit(request, key)
            serializer = SendEmailSerializer(data=data, context={"organization": organization})
            serializer.is_valid(raise_exception=True)
        except BaseException:
            # 429, 503, 400: nothing was sent, and the key is not used up.
            if claim is not None:
                idempotency.release(claim)
            raise

        result = services.send_email(
            org=organization,
            key=key,
            endpoint=self.endpoint,
            data=serializer.validated_data,
            request_id=request.request_id,
            policy=serializer.policy,
            claim=claim,
        )
        return self._respond(request, result.body, replayed=False)

    def _parse(self, request) -> dict:
        parsers.read_body(request)
        data = request.data
        if not isinstance(data, dict):
            raise ValidationFailed(
                "The body must be a JSON object", details={"body": ["Expected a JSON object."]}
            )
        return data

    def _respond(self, request, body: dict, *, replayed: bool) -> Response:
        response = Response(body, status=200)
        if replayed:
            response["Idempotency-Replayed"] = "true"
        self._decorate(request, response)
        fresh = not replayed
        suppressed = body.get("status") == Send.Status.SUPPRESSED
        self._count(
            request,
            response.status_code,
            sent=fresh and not suppressed,
            suppressed=fresh and suppressed,
            replayed=replayed,
        )
        return response

    def finalize_error_response(self, request, response, error) -> None:
        """Called by fluxomail.api.exception_handler for every error answer of this view."""
        self._decorate(request, response)
        self._count(request, response.status_code, code=error.code)

    def _decorate(self, request, response) -> None:
        if self.idempotency_key is not None:
            response["Idempotency-Key"] = self.idempotency_key
        key = getattr(request, "auth", None)
        if key is None:
            return
        state = self.rate_state
        if state is None and not self.rate_counted:
            # Answers before the rate-limit step (403, replays, 409/422) do not count, but
            # still tell the client where its window stands.
            state = ratelimit.peek(request, key)
        if state is not None:
            for name, value in state.headers().items():
                if name not in response:
                    response[name] = value

    def _count(
        self,
        request,
        status: int,
        *,
        code: str = "",
        sent: bool = False,
        suppressed: bool = False,
        replayed: bool = False,
    ) -> None:
        key = getattr(request, "auth", None)
        if key is None:
            return
        recording.record(
            recording.Outcome(
                organization_id=key.organization_id,
                api_key_id=key.pk,
                endpoint=self.endpoint,
                status=status,
                code=code,
                sent=sent and status == 200,
                suppressed=suppressed,
                replayed=replayed,
                latency_ms=int((time.monotonic() - self.started) * 1000),
            )
        )

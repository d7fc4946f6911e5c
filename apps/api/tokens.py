"""`/api/v1/tokens/`: the caller's API tokens (docs/security.md#api-tokens): list them, create
one (its key is in that answer and never again), read one, revoke one (DELETE).

A session or a token with the `admin` scope may manage tokens; a `read` or `alerts:write`
token may not, not even list them. Issuing, validating and revoking are
`apps.accounts.tokens`'s, shared with the page, the admin and the `apitoken` command.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts import tokens
from apps.accounts.models import ApiToken
from apps.api.permissions import OwnTokensPermission
from apps.api.query import CheckedQuery
from apps.api.serializers import DetailSerializer

_TS = "2026-12-02T15:04:05.500000Z"


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How `ApiTokenAuthentication` appears in the OpenAPI schema: a bearer token."""

    target_class = "apps.accounts.tokens.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer <key>` (`Token <key>` works "
            "too). Its scopes limit what it may do (docs/security.md#api-tokens).",
        }


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as answered: never its key (kept nowhere) nor its digest."""

    prefix = serializers.CharField(read_only=True, help_text="The key's first characters.")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiToken.SCOPES), read_only=True
    )
    last_used = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Within a minute."
    )

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "scopes", "created", "expires", "last_used", "revoked"]
        read_only_fields = fields


class CreatedApiTokenSerializer(ApiTokenSerializer):
    """A new token as answered by its creation, the one answer that holds its key."""

    key = serializers.CharField(
        read_only=True, help_text="The key: shown in this answer only. Keep it secret."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "key"]
        read_only_fields = fields


class NewApiTokenSerializer(serializers.Serializer):
    """A new token's fields, checked by `tokens.api_token_errors` (one source of truth)."""

    name = serializers.CharField(
        max_length=tokens.NAME_MAX_CHARS, help_text="Yours to choose; unique among your tokens."
    )
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiToken.SCOPES),
        min_length=1,
        help_text="read: market data; alerts:write: manage your alert rules and events; "
        "admin: everything your role allows, tokens included.",
    )
    expires = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When it stops working (ISO 8601); none: never."
    )

    def validate(self, attrs: dict) -> dict:
        errors = tokens.api_token_errors(
            user=self.context["request"].user,
            name=attrs["name"],
            scopes=attrs["scopes"],
            expires=attrs.get("expires"),
        )
        if errors:
            raise ValidationError(errors)
        return attrs


_TOKEN_EXAMPLE = {
    "id": 3,
    "name": "backtester",
    "prefix": "mfx_q3Zr8K1w",
    "scopes": ["read"],
    "created": _TS,
    "expires": "2027-06-30T00:00:00Z",
    "last_used": _TS,
    "revoked": None,
}
_KEY_EXAMPLE = "mfx_q3Zr8K1wX2m9T0p4cVbN7yLs5QeJ6hAoGdUiRkWfZ1E"
_UNAUTHORIZED = {
    401: OpenApiResponse(
        DetailSerializer, description="No login, or a bad, revoked or expired key."
    )
}
_FORBIDDEN = {
    403: OpenApiResponse(
        DetailSerializer,
        description="A role that keeps no tokens (`analyst` and up do), or a token without "
        "`admin` scope.",
    )
}
_THROTTLED = {429: OpenApiResponse(DetailSerializer, description="Throttled: see Retry-After.")}
_NOT_FOUND = {404: OpenApiResponse(DetailSerializer, description="No such token of yours.")}
_BAD_TOKEN = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="A field is invalid: each invalid field maps to its messages.",
        examples=[
            OpenApiExample(
                "a name already used",
                value={
                    "name": [
                        "You already have a token named 'ci' (revoked tokens keep their name)."
                    ]
                },
                status_codes=["400"],
            )
        ],
    )
}
_BAD_PAGE = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT,
        description="A paging parameter is malformed: each one maps to its messages.",
    )
}
_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Token id.")


def answers(code: int, ok, *extra: dict) -> dict:
    out = {code: ok, **_UNAUTHORIZED, **_FORBIDDEN, **_THROTTLED}
    for more in extra:
        out.update(more)
    return out


@extend_schema_view(
    list=extend_schema(
        operation_id="tokens_list",
        responses=answers(
            200,
            ApiTokenSerializer(many=True),
            _BAD_PAGE,
            {404: OpenApiResponse(DetailSerializer, description="No such page.")},
        ),
        examples=[OpenApiExample("A token", response_only=True, value=_TOKEN_EXAMPLE)],
    ),
    create=extend_schema(
        operation_id="tokens_create",
        request=NewApiTokenSerializer,
        responses=answers(201, CreatedApiTokenSerializer, _BAD_TOKEN),
        examples=[
            OpenApiExample(
                "A read-only token for a year",
                request_only=True,
                value={"name": "backtester", "scopes": ["read"], "expires": "2027-12-01T00:00:00Z"},
            ),
            OpenApiExample(
                "Created: the key, this once",
                response_only=True,
                value={**_TOKEN_EXAMPLE, "last_used": None, "key": _KEY_EXAMPLE},
            ),
        ],
    ),
    retrieve=extend_schema(
        operation_id="tokens_retrieve",
        parameters=[_ID],
        responses=answers(200, ApiTokenSerializer, _NOT_FOUND),
        examples=[OpenApiExample("A token", response_only=True, value=_TOKEN_EXAMPLE)],
    ),
    destroy=extend_schema(
        operation_id="tokens_revoke",
        description="Revoke one of your tokens: it stops working at once and stays listed, "
        "with when it was revoked. Revoking it again is fine.",
        parameters=[_ID],
        responses={204: None, **_UNAUTHORIZED, **_FORBIDDEN, **_THROTTLED, **_NOT_FOUND},
    ),
)
class TokenViewSet(
    CheckedQuery,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Your API tokens (`tokens`): list them newest first (revoked ones too), create one (the
    answer holds its key, shown this once), read one, revoke one (DELETE). Another user's
    token is a 404. Send the key as `Authorization: Bearer <key>`."""

    # Roles here; a token's scopes are checked by apps.accounts.tokens.TokenScopes.
    permission_classes = [OwnTokensPermission, tokens.TokenScopes]
    token_read_scope = token_write_scope = ApiToken.ADMIN
    serializer_class = ApiTokenSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"  # "abc" is a 404 from the view, as any unknown id

    def get_queryset(self):
        return tokens.user_tokens(self.request.user)

    def get_serializer_class(self):
        # The browsable API's form for POST is the new token's fields.
        return NewApiTokenSerializer if self.action == "create" else ApiTokenSerializer

    def get_object(self) -> ApiToken:
        try:
            return self.get_queryset().get(pk=int(self.kwargs["id"]))
        except (ValueError, OverflowError, ApiToken.DoesNotExist):
            raise NotFound("No such token.") from None

    def create(self, request: Request) -> Response:
        """A new token; the answer holds its key, which is never shown again."""
        body = NewApiTokenSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        try:
            token, key = tokens.api_token_create(user=request.user, **body.validated_data)
        except DjangoValidationError as invalid:  # raced with another token of that name
            raise ValidationError(invalid.message_dict) from invalid
        token.key = key  # on this instance only, for the answer; kept nowhere
        answer = CreatedApiTokenSerializer(token).data
        # The key must not stay in any cache between here and the caller.
        return Response(
            answer, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"}
        )

    def destroy(self, request: Request, id: str) -> Response:
        """Revoke one of your tokens (again is fine)."""
        tokens.api_token_revoke(token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

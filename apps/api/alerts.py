"""`/api/v1/alerts/`: the signed-in user's own alert rules (CRUD) and fired events, as two
viewsets registered in `apps/api/router.py`.

Alerts are personal: every view needs a login whatever MARKETFLUX_PUBLIC_READ says, and
sees only its user's rows, so another user's rule or event is a 404 (not a 403 that would
confirm it exists). Rule validation is the model's (`AlertRule.clean`, built on
`conditions.rule_errors`); rule changes go through `apps.alerts.services`, audited with
source "api". Events are answered in the shape of the WebSocket `alert` message.
"""

from __future__ import annotations

import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import ApiToken
from apps.accounts.tokens import TokenScopes
from apps.alerts import conditions, selectors, services
from apps.alerts.models import AlertEvent, AlertRule
from apps.api.permissions import OwnAlertsPermission
from apps.api.query import CheckedQuery
from apps.api.serializers import EARLIEST, LATEST, DetailSerializer
from apps.api.views import validated
from apps.market.models import TICKER_PATTERN, Symbol

SOURCE = "api"
_TS = "2026-12-02T15:04:05.500000Z"

# Answers

_UNAUTHORIZED = {
    401: OpenApiResponse(DetailSerializer, description="No login or token."),
    403: OpenApiResponse(DetailSerializer, description="Your role keeps no alert rules."),
}
_THROTTLED = {429: OpenApiResponse(DetailSerializer, description="Throttled: see Retry-After.")}
_NOT_FOUND = {404: OpenApiResponse(DetailSerializer, description="No such rule or event of yours.")}


def _bad_request(description: str, example: str, value: dict) -> dict:
    return {
        400: OpenApiResponse(
            OpenApiTypes.OBJECT,
            description=description,
            examples=[OpenApiExample(example, value=value, status_codes=["400"])],
        )
    }


_BAD_RULE = _bad_request(
    "The rule is invalid: each invalid field maps to its messages.",
    "threshold does not fit the condition",
    {"threshold": ["an RSI level is between 0 and 100"], "symbol": ["Unknown symbol: 'XYZ'."]},
)
_BAD_PAGE = _bad_request(
    "A paging parameter is malformed: each one maps to its messages.",
    "an empty page",
    {"page": ["may not be empty; leave it out to get its default."]},
)
_BAD_FILTER = _bad_request(
    "A filter is invalid: each invalid parameter maps to its messages.",
    "a bad filter",
    {"since": ["Datetime has wrong format. Use one of these formats instead: ..."]},
)


def answers(code: int, ok, *extra: dict) -> dict:
    out = {code: ok, **_UNAUTHORIZED, **_THROTTLED}
    for more in extra:
        out.update(more)
    return out


# Rules


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 16, "example": "AAPL"})
class SymbolField(serializers.CharField):
    """A ticker in any case, or "*" (every active symbol); answered upper-case or "*".

    Validated here rather than by validators, which would see None for "*".
    """

    def get_attribute(self, instance: AlertRule) -> str:
        return instance.symbol_id or conditions.ALL_SYMBOLS

    def to_internal_value(self, data) -> str | None:
        raw = super().to_internal_value(data)
        if raw == conditions.ALL_SYMBOLS:
            return None
        ticker = raw.upper()
        if len(ticker) > 16 or not (
            TICKER_PATTERN.match(ticker) and Symbol.objects.filter(ticker=ticker).exists()
        ):
            raise serializers.ValidationError(f"Unknown symbol: {raw!r}.")
        return ticker

    def to_representation(self, value: str) -> str:
        return value


_OPTIONAL = [
    "threshold", "window_seconds", "frequency", "cooldown_seconds", "expires_at", "message",
    "active",
]  # fmt: skip


class RuleSerializer(serializers.ModelSerializer):
    symbol = SymbolField(source="symbol_id", help_text="A ticker (any case), or * for all.")

    class Meta:
        model = AlertRule
        fields = [
            "id", "symbol", "condition", "threshold", "window_seconds", "frequency",
            "cooldown_seconds", "expires_at", "message", "active", "last_fired_at",
            "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["id", "last_fired_at", "created_at", "updated_at"]

    def validate(self, attrs: dict) -> dict:
        """The rule as it would be stored, checked by the model (one source of truth).

        A PUT replaces the rule: the optional fields it leaves out go back to their
        defaults (a window left over from a change % rule would otherwise be an error).
        """
        if self.instance is not None and not self.partial:
            for name in _OPTIONAL:
                attrs.setdefault(name, AlertRule._meta.get_field(name).get_default())
        rule = copy.copy(self.instance) if self.instance else AlertRule()
        for name, value in attrs.items():
            setattr(rule, name, value)
        try:
            rule.clean()
        except DjangoValidationError as invalid:
            raise ValidationError(invalid.message_dict) from invalid
        return attrs

    def create(self, validated_data: dict) -> AlertRule:
        rule = AlertRule(owner=self.context["request"].user, **validated_data)
        return self._save(rule)

    def update(self, instance: AlertRule, validated_data: dict) -> AlertRule:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return self._save(instance)

    def _save(self, rule: AlertRule) -> AlertRule:
        try:
            services.rule_save(rule, actor=self.context["request"].user, source=SOURCE)
        except DjangoValidationError as invalid:  # raced with a change (an expiry passing)
            raise ValidationError(invalid.message_dict) from invalid
        return rule


_RULE_EXAMPLE = {
    "id": 7,
    "symbol": "AAPL",
    "condition": "price_above",
    "threshold": 200.0,
    "window_seconds": None,
    "frequency": "once_per_bar",
    "cooldown_seconds": 0,
    "expires_at": None,
    "message": "{symbol} is above 200: {price}",
    "active": True,
    "last_fired_at": None,
    "created_at": _TS,
    "updated_at": _TS,
}
_RULE_EXAMPLES = [
    OpenApiExample(
        "Price above a level",
        request_only=True,
        value={"symbol": "aapl", "condition": "price_above", "threshold": 200},
    ),
    OpenApiExample(
        "Any symbol's RSI above 70, at most every 10 minutes",
        request_only=True,
        value={
            "symbol": "*",
            "condition": "rsi_above",
            "threshold": 70,
            "frequency": "every_time",
            "cooldown_seconds": 600,
        },
    ),
    OpenApiExample(
        "Up 2% within 5 minutes",
        request_only=True,
        value={
            "symbol": "TSLA",
            "condition": "change_pct_up",
            "threshold": 2,
            "window_seconds": 300,
        },
    ),
    OpenApiExample("A rule", response_only=True, value=_RULE_EXAMPLE),
]
_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Rule id.")


# One text per path, as the API has always described them.
_RULES_DESCRIPTION = "Your alert rules, newest first (GET), or a new one (POST)."
_RULE_DESCRIPTION = "One of your rules: read, replace (PUT), change some fields (PATCH), delete."


@extend_schema_view(
    list=extend_schema(
        operation_id="alerts_rules_list",
        description=_RULES_DESCRIPTION,
        responses=answers(
            200,
            RuleSerializer(many=True),
            _BAD_PAGE,
            {404: OpenApiResponse(DetailSerializer, description="No such page.")},
        ),
        examples=[OpenApiExample("A rule", response_only=True, value=_RULE_EXAMPLE)],
    ),
    create=extend_schema(
        operation_id="alerts_rules_create",
        description=_RULES_DESCRIPTION,
        responses=answers(201, RuleSerializer, _BAD_RULE),
        examples=_RULE_EXAMPLES,
    ),
    retrieve=extend_schema(
        operation_id="alerts_rules_retrieve",
        description=_RULE_DESCRIPTION,
        parameters=[_ID],
        responses=answers(200, RuleSerializer, _NOT_FOUND),
        examples=[OpenApiExample("A rule", response_only=True, value=_RULE_EXAMPLE)],
    ),
    update=extend_schema(
        operation_id="alerts_rules_update",
        description=_RULE_DESCRIPTION,
        parameters=[_ID],
        responses=answers(200, RuleSerializer, _NOT_FOUND, _BAD_RULE),
        examples=_RULE_EXAMPLES,
    ),
    partial_update=extend_schema(
        operation_id="alerts_rules_partial_update",
        description=_RULE_DESCRIPTION,
        parameters=[_ID],
        responses=answers(200, RuleSerializer, _NOT_FOUND, _BAD_RULE),
        examples=[
            OpenApiExample("Disable", request_only=True, value={"active": False}),
            OpenApiExample("A rule", response_only=True, value=_RULE_EXAMPLE),
        ],
    ),
    destroy=extend_schema(
        operation_id="alerts_rules_destroy",
        description=_RULE_DESCRIPTION,
        parameters=[_ID],
        responses={204: None, **_UNAUTHORIZED, **_THROTTLED, **_NOT_FOUND},
    ),
)
class RuleViewSet(CheckedQuery, viewsets.ModelViewSet):
    """Your alert rules (`alerts/rules`): list them newest first, create, read, replace
    (PUT), change some fields (PATCH), delete. Another user's rule is a 404."""

    # Roles here; a token's scopes are checked by apps.accounts.tokens.TokenScopes.
    permission_classes = [OwnAlertsPermission, TokenScopes]
    token_write_scope = ApiToken.ALERTS_WRITE
    serializer_class = RuleSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"  # "abc" is a 404 from the view, as any unknown id

    def get_queryset(self):
        return selectors.user_rules(self.request.user)

    def perform_destroy(self, instance: AlertRule) -> None:
        services.rule_delete(instance, actor=self.request.user, source=SOURCE)


# Events


class EventSerializer(serializers.Serializer):
    """An event as answered (built by `messages.alert_event`; schema only)."""

    id = serializers.IntegerField()
    rule = serializers.IntegerField(help_text="The rule that fired.")
    symbol = serializers.CharField()
    ts = serializers.DateTimeField(help_text="The tick that fired the rule.")
    condition = serializers.ChoiceField(choices=conditions.CONDITION_CHOICES)
    price = serializers.FloatField()
    value = serializers.FloatField(help_text="The value that fired (price, change %, RSI...).")
    message = serializers.CharField()
    acknowledged = serializers.BooleanField()


class EventsQuery(serializers.Serializer):
    symbol = serializers.CharField(required=False, max_length=16, help_text="Ticker, any case.")
    since = serializers.DateTimeField(
        required=False, help_text="Events at or after this (ISO 8601; UTC without an offset)."
    )
    until = serializers.DateTimeField(required=False, help_text="Events before this (ISO 8601).")
    # Not a BooleanField: it reads "yes", "1", "on"... where anything but true/false is a 400.
    acknowledged = serializers.ChoiceField(
        choices=["true", "false"], required=False, help_text="Only acknowledged (true) or not."
    )
    rule = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="Only this rule's events."
    )

    def _in_range(self, value):
        if not EARLIEST <= value < LATEST:
            raise serializers.ValidationError(
                f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}."
            )
        return value

    validate_since = _in_range
    validate_until = _in_range


_EVENT_EXAMPLE = {
    "id": 1042,
    "rule": 7,
    "symbol": "AAPL",
    "ts": _TS,
    "condition": "price_above",
    "price": 200.12,
    "value": 200.12,
    "message": "AAPL is above 200: 200.12",
    "acknowledged": False,
}
_EVENT_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Event id.")


class AcknowledgeMany(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        min_length=1,
        max_length=1000,
        help_text="Event ids; ids that are not yours are ignored.",
    )


class AcknowledgedCount(serializers.Serializer):
    acknowledged = serializers.IntegerField(help_text="How many were newly acknowledged.")


def _own_event(request: Request, id: str) -> AlertEvent:
    try:
        return AlertEvent.objects.get(owner=request.user, pk=int(id))
    except (ValueError, OverflowError, AlertEvent.DoesNotExist):
        raise NotFound("No such event.") from None


class EventViewSet(CheckedQuery, viewsets.GenericViewSet):
    """Your fired alerts (`alerts/events`), in the shape of the WebSocket `alert` message:
    list them newest first, read one, acknowledge one or many. Another user's event is a 404
    (and is left alone by the bulk acknowledge)."""

    # Roles here; a token's scopes are checked by apps.accounts.tokens.TokenScopes.
    permission_classes = [OwnAlertsPermission, TokenScopes]
    token_write_scope = ApiToken.ALERTS_WRITE
    serializer_class = EventSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"  # "abc" is a 404 from the view, as any unknown id

    def get_queryset(self):
        # The actions read through `selectors` themselves; the browsable API's page of the
        # list asks for a queryset too (without one that page was a 500).
        return selectors.user_events(self.request.user)

    @extend_schema(
        operation_id="alerts_events_list",
        parameters=[EventsQuery],
        responses=answers(
            200,
            EventSerializer(many=True),
            _BAD_FILTER,
            {404: OpenApiResponse(DetailSerializer, description="No such page.")},
        ),
        examples=[OpenApiExample("An event", response_only=True, value=_EVENT_EXAMPLE)],
    )
    def list(self, request: Request) -> Response:
        """Your fired alerts, newest first."""
        query = validated(EventsQuery, request)
        if "acknowledged" in query:
            query["acknowledged"] = query["acknowledged"] == "true"
        page = self.paginate_queryset(selectors.user_events(request.user, **query))
        return self.get_paginated_response([selectors.event_message(e) for e in page])

    @extend_schema(
        operation_id="alerts_events_retrieve",
        parameters=[_EVENT_ID],
        responses=answers(200, EventSerializer, _NOT_FOUND),
        examples=[OpenApiExample("An event", value=_EVENT_EXAMPLE)],
    )
    def retrieve(self, request: Request, id: str) -> Response:
        """One of your events."""
        return Response(selectors.event_message(_own_event(request, id)))

    @extend_schema(
        operation_id="alerts_events_acknowledge",
        parameters=[_EVENT_ID],
        request=None,
        responses=answers(200, EventSerializer, _NOT_FOUND),
        examples=[OpenApiExample("Acknowledged", value={**_EVENT_EXAMPLE, "acknowledged": True})],
    )
    # No body: the browsable page offers a bare POST button, not a form of event fields.
    @action(detail=True, methods=["post"], serializer_class=serializers.Serializer)
    def acknowledge(self, request: Request, id: str) -> Response:
        """Mark one of your events acknowledged (again is fine); answers the event."""
        event = services.event_acknowledge(_own_event(request, id))
        return Response(selectors.event_message(event))

    @extend_schema(
        operation_id="alerts_events_acknowledge_many",
        request=AcknowledgeMany,
        responses=answers(
            200,
            AcknowledgedCount,
            _bad_request(
                "`ids` is missing or invalid.",
                "no ids",
                {"ids": ["This list may not be empty."]},
            ),
        ),
        examples=[
            OpenApiExample("Three events", request_only=True, value={"ids": [1040, 1041, 1042]}),
            OpenApiExample("Answer", response_only=True, value={"acknowledged": 2}),
        ],
    )
    # `alerts/events/acknowledge`: the router puts list-level routes before `{id}`, so the
    # word is never taken for an event id.
    @action(
        detail=False,
        methods=["post"],
        url_path="acknowledge",
        url_name="acknowledge-many",
        serializer_class=AcknowledgeMany,
    )
    def acknowledge_many(self, request: Request) -> Response:
        """Acknowledge many of your events at once (one UPDATE; idempotent)."""
        body = AcknowledgeMany(data=request.data)
        body.is_valid(raise_exception=True)
        count = services.events_acknowledge(owner=request.user, ids=body.validated_data["ids"])
        return Response({"acknowledged": count})

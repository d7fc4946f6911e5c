"""Test data (factory_boy): users, alert rules and their events, with the defaults most
tests want, so a test names only what matters to it."""

from __future__ import annotations

import factory
from factory.django import DjangoModelFactory


class UserFactory(DjangoModelFactory):
    """A user with a name only, as `create_user(name)` makes one: no usable password."""

    class Meta:
        model = "auth.User"

    username = factory.Sequence(lambda n: f"user{n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return model_class._default_manager.create_user(*args, **kwargs)


class AlertRuleFactory(DjangoModelFactory):
    """A rule on AAPL that fires while the price is above 200 (the symbol must exist: the
    `market` fixture seeds it)."""

    class Meta:
        model = "alerts.AlertRule"

    owner = factory.SubFactory(UserFactory)
    symbol_id = "AAPL"
    condition = "price_above"
    threshold = 200.0


class AlertEventFactory(DjangoModelFactory):
    """An event of `rule` (owner, symbol and condition taken from it) at 201; pass `ts`."""

    class Meta:
        model = "alerts.AlertEvent"

    rule = factory.SubFactory(AlertRuleFactory)
    owner = factory.LazyAttribute(lambda event: event.rule.owner)
    symbol = factory.LazyAttribute(lambda event: event.rule.symbol_id or "AAPL")
    condition = factory.LazyAttribute(lambda event: event.rule.condition)
    price = 201.0
    value = 201.0
    message = "fired"

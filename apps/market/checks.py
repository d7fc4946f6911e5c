"""System checks: `migrate` and `manage.py check --database default` run these."""

from __future__ import annotations

from django.core.checks import Error, Tags, register
from django.db import connections

from apps.market import timescale


@register(Tags.database)
def timescale_when_required(app_configs, databases=None, **kwargs) -> list[Error]:
    errors = []
    for alias in databases or []:
        try:
            timescale.require_if_configured(connections[alias])
        except timescale.TimescaleRequiredError as exc:
            errors.append(Error(str(exc), id="market.E001"))
    return errors

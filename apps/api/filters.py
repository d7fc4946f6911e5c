"""Filters of the stock list (`?active=&exchange=&sector=&search=`), and the backend that
shows them on the browsable page."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from django_filters.rest_framework import DjangoFilterBackend

from apps.market.models import Symbol


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend whose browsable form leaves its empty fields out of the query
    it submits: an empty parameter is a 400 (docs/contracts.md#bad-parameters), and the
    stock form's four fields are rarely all filled."""

    template = "api/filter_form.html"


class SymbolFilter(django_filters.FilterSet):
    # Not BooleanFilter: it ignores a value it cannot read, where a 400 is the answer.
    active = django_filters.TypedChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        coerce=lambda value: value == "true",
        help_text="Only active (true) or inactive (false) symbols.",
    )
    exchange = django_filters.CharFilter(lookup_expr="iexact", help_text="Exchange, e.g. NASDAQ.")
    sector = django_filters.CharFilter(lookup_expr="iexact", help_text="Sector, e.g. Technology.")
    search = django_filters.CharFilter(
        method="filter_search", help_text="Ticker prefix or part of the name."
    )

    class Meta:
        model = Symbol
        fields = ["active", "exchange", "sector", "search"]

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(ticker__istartswith=value) | Q(name__icontains=value))

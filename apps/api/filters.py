"""Filters of the stock list (`?active=&exchange=&sector=&search=`)."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from apps.market.models import Symbol


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

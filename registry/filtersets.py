"""Filters of the registry's list endpoints, done in the database."""

from __future__ import annotations

from django_filters import rest_framework as filters

from registry.models import HEALTH_FILTERS, Service, ServiceQuerySet


class ServiceFilterSet(filters.FilterSet):
    tag = filters.CharFilter(method="filter_tag", help_text="only services carrying this tag")
    health = filters.ChoiceFilter(
        choices=[(h, h) for h in HEALTH_FILTERS],
        method="filter_health",
        help_text="passing: every instance routable; critical: none; empty: no instances",
    )
    search = filters.CharFilter(
        method="filter_search", help_text="substring of name or description"
    )

    class Meta:
        model = Service
        fields: list[str] = []

    def filter_tag(self, queryset: ServiceQuerySet, name: str, value: str) -> ServiceQuerySet:
        return queryset.with_tag(value)

    def filter_health(self, queryset: ServiceQuerySet, name: str, value: str) -> ServiceQuerySet:
        return queryset.with_health(value)

    def filter_search(self, queryset: ServiceQuerySet, name: str, value: str) -> ServiceQuerySet:
        value = value.strip()
        return queryset.matching(value) if value else queryset

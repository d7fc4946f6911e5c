"""API tokens in the admin (docs/security.md#api-tokens): every user's tokens, a Revoke
action, and a form that makes a token and shows its key once, on the page that answers the
save (`response_add`), never in a message kept in the session or a cookie. No page shows a
digest: the form has no such field and the list shows the key's prefix only."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from apps.accounts import tokens
from apps.accounts.forms import ApiTokenAdminForm
from apps.accounts.models import ApiToken

_KEY_ATTR = "_new_api_token_key"  # the new key, on the request that made it only


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        if self.value() == "revoked":
            return queryset.filter(revoked__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked__isnull=True, expires__lte=now)
        if self.value() == "active":
            return queryset.filter(revoked__isnull=True).exclude(expires__lte=now)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenAdminForm
    list_display = [
        "name", "user", "key_prefix", "scope_list", "created", "expires", "last_used",
        "revoked", "state",
    ]  # fmt: skip
    list_filter = [StateFilter, "created"]
    search_fields = ["name", "prefix", "user__username"]
    list_select_related = ["user"]
    ordering = ["-created"]
    actions = ["revoke"]

    @admin.display(description="key starts", ordering="prefix")
    def key_prefix(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    @admin.display(description="scopes")
    def scope_list(self, token: ApiToken) -> str:
        return ", ".join(token.scopes)

    @admin.display(description="state")
    def state(self, token: ApiToken) -> str:
        return tokens.token_state(token)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return ["user", "name", "scopes", "expires"]
        return ["user", "name", "key_prefix", "scopes", "expires", "created", "last_used",
                "revoked"]  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None):
        if obj is None:
            return []
        # Revoking is the action's (it cannot be undone here); the owner never changes.
        return ["user", "key_prefix", "created", "last_used", "revoked"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        if not change:
            setattr(request, _KEY_ATTR, tokens.assign_key(obj))
        obj.name = obj.name.strip()
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        """The new key, shown on this page once; the usual redirect would need it kept."""
        key = getattr(request, _KEY_ATTR, None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "Copy the new token's key",
            "opts": self.model._meta,
            "token": obj,
            "key": key,
            "change_url": reverse("admin:accounts_apitoken_change", args=[obj.pk]),
            "list_url": reverse("admin:accounts_apitoken_changelist"),
        }
        return TemplateResponse(request, "admin/accounts/apitoken/key.html", context)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        ids = list(queryset.filter(revoked__isnull=True).values_list("pk", flat=True))
        count = tokens.api_tokens_revoke(queryset)
        for token in ApiToken.objects.filter(pk__in=ids):
            self.log_change(request, token, "Revoked.")
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)

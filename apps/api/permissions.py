"""Who may do what through the API: each permission class asks `apps.accounts.roles` about
one action (docs/security.md#roles).

An anonymous caller refused is a 401 (DRF answers so when an authenticator offers a
challenge), a signed-in one a 403. What an API token may do beyond its owner's role is
limited by its scopes, which `apps.accounts.tokens.TokenScopes` checks beside these
classes: nothing here looks at scopes.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from apps.accounts import roles


class RolePermission(BasePermission):
    """Lets in whoever `roles.may` allows `action`."""

    action: str = ""

    def has_permission(self, request, view) -> bool:
        return roles.may(request.user, self.action)


class MarketDataPermission(RolePermission):
    """Market data: everyone while MARKETFLUX_PUBLIC_READ is on (the default); with it off,
    signed-in users whose role reads the market."""

    action = roles.READ_MARKET
    message = "Your role does not allow reading market data."


class OwnAlertsPermission(RolePermission):
    """Your own alert rules and events: analysts and up."""

    action = roles.OWN_ALERTS
    message = "Your role does not allow alert rules."


class OwnTokensPermission(RolePermission):
    """Your own API tokens: analysts and up."""

    action = roles.OWN_TOKENS
    message = "Your role does not allow API tokens."

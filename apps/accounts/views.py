"""The signed-in user's API tokens page, `/account/tokens/` (docs/security.md#api-tokens):
the list, a form for a new token, a Revoke button per token.

A new token's key is shown in the answer to the POST that made it, and nowhere else: not
after a redirect (that would mean keeping it in the session or a cookie until the next page)
and never again. So that answer is not cached (`never_cache`), like every answer here.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from apps.accounts import roles, tokens
from apps.accounts.forms import NewTokenForm


@never_cache
@roles.page_requires(roles.OWN_TOKENS)
def token_list(request: HttpRequest) -> HttpResponse:
    """GET: the page. POST: create a token from the form and show its key, this once."""
    form = NewTokenForm(request.POST or None, user=request.user)
    created = key = None
    if request.method == "POST" and form.is_valid():
        created, key = tokens.api_token_create(
            user=request.user,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires=form.cleaned_data["expires"],
        )
        form = NewTokenForm(user=request.user)  # an empty form for the next one
    return render(
        request,
        "accounts/tokens.html",
        {
            "form": form,
            "rows": [(t, tokens.token_state(t)) for t in tokens.user_tokens(request.user)],
            "created": created,
            "key": key,
        },
        status=400 if form.errors else 200,
    )


@never_cache
@require_POST
@roles.page_requires(roles.OWN_TOKENS)
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke one of your tokens; another user's is a 404."""
    token = get_object_or_404(tokens.user_tokens(request.user), pk=pk)
    tokens.api_token_revoke(token=token)
    messages.success(request, f"Token {token.name} ({token.prefix}…) revoked.")
    return redirect("accounts:tokens")

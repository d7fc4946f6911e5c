"""API tokens (docs/security.md#api-tokens): issuing, checking and revoking keys, moving the
old single DRF tokens over, and the DRF authentication and permission classes that read
them on every REST request.

Why our own code and not django-rest-knox: knox tokens have no name, no scopes and no
last-used time, which is most of what a token is here. Why SHA-256 and not a slow password
hash (PBKDF2, Argon2): a key is 256 random bits (`secrets.token_urlsafe(32)`), not a
password a person chose, so there is nothing to guess faster with a fast hash; and the
digest alone finds the row, one probe of a unique index per request, where a salted slow
hash would need a separate lookup key and tens of milliseconds of CPU per request. Nothing
is compared in Python, so there is no timing to measure but the index's, and learning how
much of a digest matched tells nothing of a key (preimage resistance).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.apps import apps as django_apps
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS, BasePermission

from apps.accounts.models import ApiToken

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

KEY_PREFIX = "mfx_"  # recognisable in logs, config files and secret scanners
KEY_BYTES = 32  # 256 random bits: 43 URL-safe characters after the prefix
SHOWN_CHARS = 8  # random characters kept in `prefix` to tell a user's tokens apart
KEY_MAX_CHARS = 64  # longer is no key of ours (a new key is 47, a legacy DRF key 40)
TOUCH_EVERY = timedelta(minutes=1)  # last_used is written at most this often per token
NAME_MAX_CHARS = ApiToken._meta.get_field("name").max_length
SCOPES = tuple(code for code, _ in ApiToken.SCOPES)
LEGACY_NAME = "legacy"  # the name a migrated DRF token gets (docs/security.md#legacy-tokens)
_LEGACY_APP = "authtoken"  # rest_framework.authtoken's label


# Keys


class TokenError(Exception):
    """A presented key that does not authenticate; `str()` says why, for the caller."""


class UnknownKey(TokenError):
    """The key is no token's (or not a key at all)."""


class DeadKey(TokenError):
    """The key was a token's, but it is revoked or expired, or its user is inactive."""


def digest_of(key: str) -> str:
    """What the database keeps of a key: its SHA-256, in hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The start of a key, kept to tell tokens apart: `mfx_` and 8 random characters (48
    of the key's 256 bits), or the first 8 of a legacy 40-hex key (32 of its 160)."""
    head = len(KEY_PREFIX) if key.startswith(KEY_PREFIX) else 0
    return key[: head + SHOWN_CHARS]


def assign_key(token: ApiToken, key: str | None = None) -> str:
    """Give `token` (unsaved) a new random key, or `key`; returns the key, which is kept
    nowhere: the caller shows it once."""
    key = key if key is not None else KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    token.prefix = display_prefix(key)
    token.digest = digest_of(key)
    return key


def token_problem(token: ApiToken, *, now: datetime | None = None) -> str | None:
    """Why `token` may not be used now, in words; None if it may."""
    now = now or timezone.now()
    if token.revoked is not None:
        return f"Token {token.prefix}… was revoked."
    if token.expires is not None and token.expires <= now:
        return f"Token {token.prefix}… has expired."
    if not token.user.is_active:
        return "User inactive or deleted."
    return None


def token_state(token: ApiToken, *, now: datetime | None = None) -> str:
    """`revoked`, `expired` or `active`, as the page and the admin list show it."""
    if token.revoked is not None:
        return "revoked"
    if token.expires is not None and token.expires <= (now or timezone.now()):
        return "expired"
    return "active"


def _plausible(key: str) -> bool:
    """Whether `key` is worth a query: keys are short printable ASCII (PostgreSQL refuses a
    NUL in text, and a megabyte of header is no key)."""
    return 0 < len(key) <= KEY_MAX_CHARS and key.isascii() and key.isprintable()


def _legacy_token(key: str):
    """The DRF token whose key this is, while `rest_framework.authtoken` is installed and
    the row has not been migrated (docs/security.md#legacy-tokens); else None."""
    if key.startswith(KEY_PREFIX) or not django_apps.is_installed("rest_framework.authtoken"):
        return None
    legacy = django_apps.get_model(_LEGACY_APP, "Token")
    return legacy.objects.select_related("user").filter(key=key).first()


def _touch(token: ApiToken, now: datetime) -> None:
    """Record that `token` was used, writing at most once a `TOUCH_EVERY` per token: the
    lookup already read `last_used`, and the UPDATE's condition keeps processes that race
    here from writing twice."""
    if token.last_used is not None and now - token.last_used < TOUCH_EVERY:
        return
    stale = Q(last_used__isnull=True) | Q(last_used__lt=now - TOUCH_EVERY)
    ApiToken.objects.filter(stale, pk=token.pk).update(last_used=now)
    token.last_used = now


def key_credentials(key: str, *, now: datetime | None = None) -> tuple[AbstractBaseUser, object]:
    """The user a presented key authenticates, and its token: an `ApiToken`, or the DRF
    `Token` of a legacy key not migrated yet (which has every right, as before).

    Raises `UnknownKey` for a key that is no token's, `DeadKey` for a revoked or expired
    token or an inactive user. Records the use (`last_used`).
    """
    if not _plausible(key):
        raise UnknownKey("Invalid token.")
    token = ApiToken.objects.select_related("user").filter(digest=digest_of(key)).first()
    if token is None:
        legacy = _legacy_token(key)
        if legacy is None:
            raise UnknownKey("Invalid token.")
        if not legacy.user.is_active:
            raise DeadKey("User inactive or deleted.")
        return legacy.user, legacy
    now = now or timezone.now()
    problem = token_problem(token, now=now)
    if problem is not None:
        raise DeadKey(problem)
    _touch(token, now)
    return token.user, token


def allows(auth: object, scope: str) -> bool:
    """Whether the credential `auth` (a request's, a socket's) may act in `scope`.

    Only an `ApiToken` is limited: a session or a legacy DRF token acts with everything its
    user's role allows, as `admin` scope does.
    """
    if not isinstance(auth, ApiToken):
        return True
    return ApiToken.ADMIN in auth.scopes or scope in auth.scopes


# Managing tokens


def user_tokens(user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """A user's tokens, newest first, revoked ones included (they keep their name)."""
    return ApiToken.objects.filter(user=user).order_by("-created", "-pk")


def api_token_errors(
    *,
    user: AbstractBaseUser,
    name: str,
    scopes: Iterable[str],
    expires: datetime | None,
    token: ApiToken | None = None,
    now: datetime | None = None,
) -> dict[str, list[str]]:
    """What is wrong with a token's fields, each message under its field's name (empty if
    nothing is). One function, so the page, the API, the admin and the command refuse the
    same tokens with the same words. `token` is the token being changed, if any."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    scopes = list(scopes)
    if not name:
        errors["name"] = ["Give the token a name, such as the program that will use it."]
    elif len(name) > NAME_MAX_CHARS:
        errors["name"] = [f"A name has at most {NAME_MAX_CHARS} characters."]
    else:
        same = ApiToken.objects.filter(user=user, name=name)
        if token is not None and token.pk is not None:
            same = same.exclude(pk=token.pk)
        if same.exists():
            errors["name"] = [
                f"You already have a token named {name!r} (revoked tokens keep their name)."
            ]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        errors["scopes"] = [f"Unknown scope {unknown[0]!r}: the scopes are {', '.join(SCOPES)}."]
    elif not scopes:
        errors["scopes"] = [f"Give at least one scope: {', '.join(SCOPES)}."]
    if expires is not None:
        if timezone.is_naive(expires):
            errors["expires"] = ["Give the expiry with its time zone (or in UTC)."]
        elif expires <= (now or timezone.now()):
            errors["expires"] = ["The expiry must be in the future."]
    return errors


def _ordered_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes once each, in the model's order."""
    wanted = set(scopes)
    return [s for s in SCOPES if s in wanted]


def api_token_create(
    *,
    user: AbstractBaseUser,
    name: str,
    scopes: Iterable[str],
    expires: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token of `user` and its key, which the caller shows once: only its digest is
    stored. Raises ValidationError naming each bad field (`api_token_errors`)."""
    scopes = list(scopes)
    errors = api_token_errors(user=user, name=name, scopes=scopes, expires=expires)
    if errors:
        raise ValidationError(errors)
    token = ApiToken(user=user, name=name.strip(), scopes=_ordered_scopes(scopes), expires=expires)
    key = assign_key(token)
    try:
        with transaction.atomic():
            token.save()
    except IntegrityError:  # a token of that name made meanwhile (the unique constraint)
        raise ValidationError(
            {"name": [f"You already have a token named {token.name!r}."]}
        ) from None
    return token, key


def api_tokens_revoke(tokens: QuerySet[ApiToken]) -> int:
    """Revoke every token of `tokens` not revoked yet; how many were. Revoked tokens stay
    listed (with when), so their owner sees what stopped working and why."""
    now, revoked = timezone.now(), 0
    with transaction.atomic():  # a save per token, not one UPDATE: each is audited
        for token in tokens.select_for_update().filter(revoked__isnull=True):
            token.revoked = now
            token.save(update_fields=["revoked"])
            revoked += 1
    return revoked


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke `token` (again is fine: its first revocation time stays)."""
    api_tokens_revoke(ApiToken.objects.filter(pk=token.pk))
    token.refresh_from_db(fields=["revoked"])
    return token


DEFAULT_NAME = "default"  # the token of `/api/v1/auth/token`, one per user


def default_token(user: AbstractBaseUser) -> ApiToken | None:
    """The user's token of `/api/v1/auth/token`, if any."""
    return ApiToken.objects.filter(user=user, name=DEFAULT_NAME).first()


def default_token_replace(user: AbstractBaseUser) -> tuple[ApiToken, str]:
    """A new `default` token (scope `admin`, as the DRF token it succeeds could do all the
    user may) in place of the old one and of any DRF token the user still has; its key."""
    with transaction.atomic():
        default_token_delete(user)
        return api_token_create(user=user, name=DEFAULT_NAME, scopes=[ApiToken.ADMIN])


def default_token_delete(user: AbstractBaseUser) -> None:
    """Delete the user's `default` token and DRF token (a row each, so each is audited)."""
    from rest_framework.authtoken.models import Token

    for token in ApiToken.objects.filter(user=user, name=DEFAULT_NAME):
        token.delete()
    Token.objects.filter(user=user).delete()


def legacy_tokens_migrate() -> int:
    """Turn every DRF token into an `ApiToken` with the same key, hashed, scope `admin`,
    name `legacy`, and delete the plaintext row; how many were moved. Programs keep their
    key. Safe to run again: only rows still there are moved (docs/security.md#legacy-tokens).
    """
    if not django_apps.is_installed("rest_framework.authtoken"):
        return 0
    legacy_model = django_apps.get_model(_LEGACY_APP, "Token")
    moved = 0
    with transaction.atomic():
        for legacy in legacy_model.objects.select_for_update().order_by("created"):
            digest = digest_of(legacy.key)
            if not ApiToken.objects.filter(digest=digest).exists():
                token = ApiToken(user_id=legacy.user_id, name=_free_name(legacy.user_id))
                token.scopes = [ApiToken.ADMIN]
                assign_key(token, legacy.key)
                token.save()
                # The key is as old as the DRF row: keep its age.
                ApiToken.objects.filter(pk=token.pk).update(created=legacy.created)
            legacy.delete()
            moved += 1
    return moved


def _free_name(user_id: int) -> str:
    """`legacy`, or `legacy-2`, ... when the user already has a token of that name."""
    taken = set(
        ApiToken.objects.filter(user_id=user_id, name__startswith=LEGACY_NAME).values_list(
            "name", flat=True
        )
    )
    name, n = LEGACY_NAME, 1
    while name in taken:
        n += 1
        name = f"{LEGACY_NAME}-{n}"
    return name


# REST: authentication and permission


_KEYWORDS = (b"bearer", b"token")


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` (or `Token <key>`, as DRF's tokens were sent): sets
    `request.user` to the token's owner and `request.auth` to the `ApiToken` (or to the DRF
    `Token` of a legacy key). A bad, revoked or expired key is a 401 saying which."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in _KEYWORDS:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid token header: give the key after the keyword.")
        try:
            key = parts[1].decode()
        except UnicodeError:
            raise AuthenticationFailed("Invalid token.") from None
        try:
            return key_credentials(key)
        except TokenError as refused:
            raise AuthenticationFailed(str(refused)) from None

    def authenticate_header(self, request) -> str:
        # Both keywords are read; DRF's tokens named "Token" first, so clients that look for
        # it still find it.
        return 'Token realm="api", Bearer realm="api"'


def scope_needed(method: str, view: object) -> str:
    """The scope a token needs for `method` on `view`: `read` for a safe method (or the
    view's `token_read_scope`), the view's `token_write_scope` (default `admin`) otherwise."""
    if method in SAFE_METHODS:
        return getattr(view, "token_read_scope", ApiToken.READ)
    return getattr(view, "token_write_scope", ApiToken.ADMIN)


class TokenScopes(BasePermission):
    """A request authenticated by an `ApiToken` may do only what its scopes allow
    (`scope_needed`); `admin` allows everything. Requests without a scoped token pass: who
    may do what at all is the other permission classes' business."""

    message = "This token's scopes do not allow this."

    def has_permission(self, request, view) -> bool:
        needed = scope_needed(request.method, view)
        if allows(request.auth, needed):
            return True
        # DRF makes a new instance per request, so this message is this request's only.
        self.message = (
            f"This token's scopes ({', '.join(request.auth.scopes) or 'none'}) do not include "
            f"{needed!r}, which this needs."
        )
        return False

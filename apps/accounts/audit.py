"""The audit log: who changed what, when, from where, through which door.

See docs/security.md#audit-log.

django-auditlog records every create, update and delete of the models registered here, with
the before and after of each field, in its `LogEntry` table. This module adds what the
library leaves to the project:

- the *door* a change came through (`admin`, `api`, `web`, `command`, `shell`, `pipeline`),
  kept in each entry's `additional_data`, with the actor and the client's address;
- the registration itself (models reached by name: accounts may import only `apps.ops`);
- retention (`MARKETFLUX_AUDIT_RETENTION_DAYS`) and a filterable, read-only admin.

Why our own context instead of auditlog's `AuditlogMiddleware` and `set_actor`: the
library's middleware takes the client's address from the first X-Forwarded-For entry, which
any client can write; it reads `request.user` before DRF has authenticated a token, so API
changes made with a token would have no actor; and its context does not nest (leaving an
inner `set_actor` forgets the outer one for the rest of the request). One context variable
and one `pre_save` receiver on `LogEntry` do all three right.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from auditlog.admin import LogEntryAdmin
from auditlog.filters import CIDFilter, ResourceTypeFilter
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db.models import QuerySet
from django.db.models.signals import pre_save
from django.http import HttpRequest
from django.utils import timezone

from apps.ops import logcontext
from apps.ops.metrics import client_address

# The doors a change comes through.
ADMIN, API, WEB, COMMAND, SHELL, PIPELINE = "admin", "api", "web", "command", "shell", "pipeline"
DOORS = (ADMIN, API, WEB, COMMAND, SHELL, PIPELINE)
# Path prefixes of the doors served over HTTP (marketflux_site/urls.py); any other path is
# the site's pages ("web"). The Polygon gateway (/v1-/v3) only reads, so it has no door.
_PATH_DOORS = (("/admin/", ADMIN), ("/api/", API))
# Commands whose whole run is someone typing Python.
_SHELL_COMMANDS = frozenset({"shell", "shell_plus"})

HIDDEN = "***"  # what a secret's before and after read as: that it changed, never its value

# The fields the former alert audit (alerts.AlertRuleAudit) kept, so old and new entries
# read alike; `last_fired_at` is the pipeline's.
_RULE_FIELDS = [
    "owner", "symbol", "condition", "threshold", "window_seconds", "frequency",
    "cooldown_seconds", "expires_at", "message", "active",
]  # fmt: skip

# What is audited (docs/security.md#audit-log): model label -> auditlog's options. Fields
# the pipeline or the clock move on their own (timestamps, progress, last use) are left
# out, so an entry is a change someone made.
AUDITED: dict[str, dict[str, Any]] = {
    "market.Symbol": {"exclude_fields": ["created_at", "updated_at"]},
    "market.Source": {"exclude_fields": ["created_at"]},
    # A replay's progress is the run's own; what people set is its state.
    "sources.Replay": {"include_fields": ["file", "speed", "shift", "state"]},
    "alerts.AlertRule": {"include_fields": _RULE_FIELDS},
    "auth.User": {
        "exclude_fields": ["last_login"],  # every sign-in would be an entry
        "mask_fields": ["password"],
        "mask_callable": "apps.accounts.audit.hide",
        "m2m_fields": {"groups", "user_permissions"},
    },
    "auth.Group": {"m2m_fields": {"permissions"}},
    # The digest is as good as a key to whoever holds the database: never copy it around.
    "accounts.ApiToken": {"exclude_fields": ["digest", "last_used"]},
}


# --- Who, from where, through which door ---------------------------------------------------


@dataclass
class _Door:
    """The context of the changes being made: a request, a command, a task, a service."""

    name: str
    actor: Any = None  # a user, or a callable answering one (a request's user, read late)
    remote_addr: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    entries: list[LogEntry] = field(default_factory=list)

    def user(self) -> Any:
        actor = self.actor() if callable(self.actor) else self.actor
        if getattr(actor, "is_authenticated", False) and isinstance(actor, get_user_model()):
            return actor
        return None


_current: ContextVar[_Door | None] = ContextVar("marketflux_audit_door", default=None)


@contextmanager
def door(
    name: str, *, actor: Any = None, remote_addr: str | None = None, **details: Any
) -> Iterator[list[LogEntry]]:
    """Changes made inside are recorded as made through `name` by `actor`.

    Nested inside another door (a service called by a view), the actor and address of the
    outer one stay unless given. Yields the list of entries recorded inside, filled as they
    are written.
    """
    outer = _current.get()
    if outer is not None:
        actor = actor if actor is not None else outer.actor
        remote_addr = remote_addr or outer.remote_addr
    inner = _Door(name, actor, remote_addr, details)
    token = _current.set(inner)
    try:
        yield inner.entries
    finally:
        _current.reset(token)


def door_for_path(path: str) -> str:
    """The door of an HTTP request, by its path."""
    return next((name for prefix, name in _PATH_DOORS if path.startswith(prefix)), WEB)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as the API's throttle sees it: X-Forwarded-For is believed only
    through the `NUM_PROXIES` proxies the deployment declares (docs/security.md)."""
    address = client_address(request.META, settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _stamp(sender: type, instance: LogEntry, raw: bool = False, **kwargs: Any) -> None:
    """Write the door, actor and address on each new entry (auditlog fills the rest)."""
    if raw or not instance._state.adding:
        return
    current = _current.get()
    data = dict(instance.additional_data or {})
    if current is None:
        # Code outside any request, command or task: a script, or Python run by hand.
        data.setdefault("door", SHELL)
    else:
        data.setdefault("door", current.name)
        for key, value in current.details.items():
            data.setdefault(key, value)
        user = current.user()
        if instance.actor_id is None and user is not None:
            instance.actor_id = user.pk
            instance.actor_email = getattr(user, "email", None) or None
        if instance.remote_addr is None:
            instance.remote_addr = current.remote_addr
        current.entries.append(instance)
    instance.additional_data = data


def correlation_id() -> str | None:
    """The request's or the tick batch's id (apps/ops/logcontext.py), so an entry leads to
    the log lines of the request that made it (auditlog's `cid`)."""
    return logcontext.request_id.get() or logcontext.batch_id.get() or None


def hide(value: str) -> str:
    """auditlog's mask for secrets (the password hash): nothing of the value is kept."""
    return HIDDEN


# --- Commands and tasks ------------------------------------------------------------------


def _audit_commands() -> None:
    """Run every management command inside its door.

    Django has no signal around a command, and `manage.py` is only one way in: `django-admin`
    and `call_command` (the launcher, other commands, tests) skip it. `BaseCommand.execute`
    is the one place every command passes through, so it is wrapped, once, here. A command
    called inside a request or task keeps that door.
    """
    execute = BaseCommand.execute
    if getattr(execute, "marketflux_audit", False):
        return

    @functools.wraps(execute)
    def audited(self: BaseCommand, *args: Any, **options: Any) -> Any:
        if _current.get() is not None:
            return execute(self, *args, **options)
        command = self.__module__.rsplit(".", 1)[-1]
        with door(SHELL if command in _SHELL_COMMANDS else COMMAND, command=command):
            return execute(self, *args, **options)

    audited.marketflux_audit = True  # type: ignore[attr-defined]
    BaseCommand.execute = audited  # type: ignore[method-assign]


_task_doors: dict[str, Token] = {}


def _task_started(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if task_id and _current.get() is None:  # an eager task in a request keeps its door
        _task_doors[task_id] = _current.set(_Door(PIPELINE, details={"task": task.name}))


def _task_ended(task_id: str | None = None, **kwargs: Any) -> None:
    token = _task_doors.pop(task_id or "", None)
    if token is not None:
        try:
            _current.reset(token)
        except ValueError:  # ended in another context than it started in
            _current.set(None)


# --- The admin -----------------------------------------------------------------------------


class DoorFilter(admin.SimpleListFilter):
    title = "door"
    parameter_name = "door"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(name, name) for name in DOORS]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(additional_data__door=value) if value else queryset


class AuditLogAdmin(LogEntryAdmin):
    """auditlog's own admin (no add, change or delete), plus who, where and which door, and
    filters by model, action, actor, door and date. Staff see it with
    `auditlog.view_logentry`."""

    list_display = [
        "created", "resource_url", "action", "msg_short", "user_url", "door", "remote_addr",
    ]  # fmt: skip
    list_filter = [
        ResourceTypeFilter,
        "action",
        ("actor", admin.RelatedOnlyFieldListFilter),
        DoorFilter,
        ("timestamp", admin.DateFieldListFilter),
        CIDFilter,
    ]
    readonly_fields = [*LogEntryAdmin.readonly_fields, "door", "remote_addr"]
    fieldsets = [
        (None, {"fields": ["created", "user_url", "door", "remote_addr", "resource_url", "cid"]}),
        ("Changes", {"fields": ["action", "msg"]}),
    ]

    @admin.display(description="door")
    def door(self, entry: LogEntry) -> str:
        return (entry.additional_data or {}).get("door", "")


def _install_admin() -> None:
    # auditlog's admin module registered its LogEntryAdmin during the admin's autodiscovery,
    # which runs before this app's ready() (INSTALLED_APPS lists the admin first).
    if admin.site.is_registered(LogEntry):
        admin.site.unregister(LogEntry)
    admin.site.register(LogEntry, AuditLogAdmin)


# --- Setting it up -------------------------------------------------------------------------


def install() -> None:
    """Register the audited models and the doors (called once, from AccountsConfig.ready)."""
    from celery import signals as celery_signals

    for label, options in AUDITED.items():
        model = apps.get_model(label)
        if not auditlog.contains(model):
            auditlog.register(model, **options)
    pre_save.connect(_stamp, sender=LogEntry, dispatch_uid="marketflux-audit-stamp")
    _audit_commands()
    celery_signals.task_prerun.connect(_task_started, dispatch_uid="marketflux-audit-task")
    celery_signals.task_postrun.connect(_task_ended, dispatch_uid="marketflux-audit-task")
    _install_admin()


# --- Retention -----------------------------------------------------------------------------


def prune(*, days: int | None = None, now: datetime | None = None) -> int:
    """Delete entries older than `days` (default MARKETFLUX_AUDIT_RETENTION_DAYS; 0 keeps
    everything); returns how many went."""
    days = settings.MARKETFLUX_AUDIT_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    removed, _ = LogEntry.objects.filter(timestamp__lt=cutoff).delete()
    return removed


def entries_for(model_label: str) -> QuerySet[LogEntry]:
    """Every entry about one model (`alerts.AlertRule`), oldest first."""
    return LogEntry.objects.get_for_model(apps.get_model(model_label)).order_by("timestamp", "id")

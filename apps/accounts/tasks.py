"""Celery tasks of the accounts app: the audit log's retention."""

from __future__ import annotations

from celery import shared_task

from apps.accounts import audit


@shared_task(name="accounts.audit_prune", ignore_result=True)
def audit_prune() -> int:
    """Delete audit entries past MARKETFLUX_AUDIT_RETENTION_DAYS (daily, from beat)."""
    return audit.prune()

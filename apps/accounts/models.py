"""API tokens: several named tokens per user, each with scopes, stored only as a digest."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class ApiToken(models.Model):
    """A key a program presents instead of a password (docs/security.md#api-tokens).

    The key itself is shown once, at creation; the database keeps its SHA-256 digest and a
    short prefix to tell tokens apart, so a copy of the database holds no usable key.
    """

    READ, ALERTS_WRITE, ADMIN = "read", "alerts:write", "admin"
    SCOPES = [(READ, "read market data"), (ALERTS_WRITE, "manage own alert rules"),
              (ADMIN, "everything the owner's role allows")]  # fmt: skip

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    scopes = ArrayField(models.CharField(max_length=16, choices=SCOPES), default=list)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="api_token_name_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

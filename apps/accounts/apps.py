from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Who may do what: roles, API tokens and the audit of changes (docs/security.md)."""

    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts and access"

    def ready(self) -> None:
        from apps.accounts import audit

        audit.install()  # the audited models, and the door of every change

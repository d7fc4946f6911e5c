"""The forms that make API tokens: the signed-in user's page and the admin. Both check a
token's fields with `tokens.api_token_errors`, as the API and the command do."""

from __future__ import annotations

from django import forms

from apps.accounts import tokens
from apps.accounts.models import ApiToken


def _add_errors(form: forms.BaseForm, errors: dict[str, list[str]]) -> None:
    """Each message beside its field, unless the field already has its own error."""
    for field, messages in errors.items():
        if field not in form.errors:
            for message in messages:
                form.add_error(field, message)


def _scopes_field() -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        # The code beside its meaning: the code is what the API, the command and errors use.
        choices=[(code, f"{code}: {label}") for code, label in ApiToken.SCOPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="admin: everything you may do, managing tokens included.",
    )


def _expires_field() -> forms.DateTimeField:
    return forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="UTC. Leave it empty for a token that does not expire.",
    )


class NewTokenForm(forms.Form):
    """A new token of `user`: name, scopes, optional expiry."""

    name = forms.CharField(
        max_length=tokens.NAME_MAX_CHARS, help_text="Such as the program that will use it."
    )
    scopes = _scopes_field()
    expires = _expires_field()

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self) -> dict:
        data = super().clean()
        _add_errors(
            self,
            tokens.api_token_errors(
                user=self.user,
                name=data.get("name", ""),
                scopes=data.get("scopes", []),
                expires=data.get("expires"),
            ),
        )
        return data


class ApiTokenAdminForm(forms.ModelForm):
    """The admin's token form. It has no key or digest field: a new token's key is made on
    save and shown once (`ApiTokenAdmin.response_add`)."""

    scopes = _scopes_field()
    expires = _expires_field()

    class Meta:
        model = ApiToken
        fields = ["user", "name", "scopes", "expires"]

    def clean(self) -> dict:
        data = super().clean()
        user = data.get("user") or getattr(self.instance, "user", None)
        if user is None:
            return data  # the user field's own error says so
        expiry_changed = "expires" in self.changed_data or self.instance.pk is None
        _add_errors(
            self,
            tokens.api_token_errors(
                user=user,
                name=data.get("name", ""),
                scopes=data.get("scopes", []),
                # An expiry already past may stay as it is; a new one must be ahead.
                expires=data.get("expires") if expiry_changed else None,
                token=self.instance,
            ),
        )
        return data

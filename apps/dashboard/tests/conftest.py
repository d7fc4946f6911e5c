"""Alice and Bob (the root conftest's users) keep alert rules and API tokens, which takes
the analyst role since roles came (docs/security.md#roles); a user in no role only reads."""

from __future__ import annotations

import pytest

from apps.accounts import roles


@pytest.fixture
def alice(alice):
    return roles.user_role_set(user=alice, role=roles.ANALYST)


@pytest.fixture
def bob(bob):
    return roles.user_role_set(user=bob, role=roles.ANALYST)

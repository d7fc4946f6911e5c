"""Django on a throw-away TimescaleDB (PGlite with the extension, over the wire)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from apps.ops.timescale_server import PgliteTimescale, PgliteTimescaleHandle


@contextlib.contextmanager
def django_on_timescale(django_db_blocker) -> Iterator[PgliteTimescaleHandle]:
    """Django's connection on a throw-away TimescaleDB (PGlite), migrated and seeded.

    PGlite serves one database over one connection, so the tests that use it point
    Django's default connection at it directly instead of pytest-django's test database;
    it is pointed back afterwards.
    """
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connection

    from apps.market.services import symbols_seed

    with PgliteTimescale() as server, django_db_blocker.unblock():
        saved = dict(connection.settings_dict)
        connection.close()
        connection.settings_dict.update(
            HOST=server.host, PORT=server.port, NAME="postgres", USER="postgres",
            PASSWORD=server.password, OPTIONS={"sslmode": "disable"}, CONN_MAX_AGE=0,
        )  # fmt: skip
        connection._marketflux_timescale = None
        # Content types are cached by id per connection alias, and this alias now holds
        # another database: the audit log would cite the test database's ids.
        ContentType.objects.clear_cache()
        try:
            call_command("migrate", verbosity=0)
            symbols_seed()
            yield server
        finally:
            connection.close()
            connection.settings_dict.clear()
            connection.settings_dict.update(saved)
            connection._marketflux_timescale = None
            ContentType.objects.clear_cache()

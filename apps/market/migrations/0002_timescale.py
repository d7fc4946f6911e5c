"""Bar table tuning, and TimescaleDB where available (docs/operations.md#timescaledb): hypertables, aggregates.

On plain PostgreSQL this does nothing; with MARKETFLUX_REQUIRE_TIMESCALE=1 it stops.
Policies (retention, compression, refresh) follow the settings and are applied after every
`migrate` (see apps.market.apps), so changing a retention setting needs no new migration.
"""

from django.db import migrations

from apps.market import timescale


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    if not timescale.create_extension(connection):
        return
    timescale.make_hypertable(connection, "market_tick")
    timescale.make_hypertable(connection, "market_bar")
    timescale.create_bar_aggregates(connection)


class Migration(migrations.Migration):
    dependencies = [("market", "0001_initial")]

    operations = [
        # Free room in each page lets the per-batch upsert of the open minute bar update its
        # row in place (a HOT update) instead of adding an index entry on every tick.
        migrations.RunSQL(
            "ALTER TABLE market_bar SET (fillfactor = 70)",
            "ALTER TABLE market_bar RESET (fillfactor)",
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False),
    ]

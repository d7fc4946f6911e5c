"""The snapshot table becomes a hypertable where TimescaleDB is in use."""

from django.db import migrations

from apps.market import timescale


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    if timescale.installed(connection, refresh=True):
        timescale.make_hypertable(connection, "indicators_indicatorsnapshot")


class Migration(migrations.Migration):
    dependencies = [("indicators", "0001_initial"), ("market", "0002_timescale")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False)]

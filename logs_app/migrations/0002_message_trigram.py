"""On PostgreSQL, a trigram index for keyword search (`q`) in log messages.

`q` is a case-insensitive substring match (Django's icontains, which is
UPPER(message) LIKE UPPER('%q%') on PostgreSQL); a GIN index of UPPER(message)
with pg_trgm's operator class answers it without reading the whole log. Other
databases are left as they are. Where pg_trgm cannot be installed (no
contrib package, no privilege), the migration says so and goes on: search
still works, only slower.
"""

import sys

from django.db import DatabaseError, migrations, transaction

INDEX = "log_message_trgm_idx"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as error:
        print(
            f"\n  pg_trgm is not available ({str(error).strip()}); log keyword search "
            "works without an index.",
            file=sys.stderr,
        )
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON logs_app_logentry "
        "USING gin (UPPER(message) gin_trgm_ops)"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("logs_app", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]

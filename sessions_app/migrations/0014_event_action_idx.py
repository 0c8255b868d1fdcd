from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexWithoutLock(AddIndexConcurrently):
    """On PostgreSQL CREATE INDEX CONCURRENTLY: the events table may be large
    and its writers must not wait for the build. Elsewhere a plain index."""

    def describe(self):
        return f"Create index {self.index.name} (concurrently on PostgreSQL)"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(
            self, app_label, schema_editor, from_state, to_state
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(
            self, app_label, schema_editor, from_state, to_state
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("sessions_app", "0013_switchboard_groups"),
    ]

    operations = [
        AddIndexWithoutLock(
            model_name="event",
            index=models.Index(
                condition=models.Q(data__has_key="by"),
                fields=["session_id", "id"],
                name="event_action_idx",
            ),
        ),
    ]

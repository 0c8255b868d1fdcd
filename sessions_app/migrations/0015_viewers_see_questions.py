from django.db import migrations

from sessions_app.groups import create_groups


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0014_event_action_idx"),
    ]

    operations = [
        # Adds what the groups lack (view_question) to groups made by 0013.
        migrations.RunPython(create_groups, migrations.RunPython.noop),
    ]

from django.db import migrations

from sessions_app.groups import create_groups, remove_groups


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("sessions_app", "0012_question"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="session",
            options={
                "ordering": ["-id"],
                "permissions": [
                    ("act_on_session", "Can cancel, pause, retry and answer on any session")
                ],
            },
        ),
        # Viewers see every session; operators also cancel, pause, retry and answer.
        migrations.RunPython(create_groups, remove_groups),
    ]

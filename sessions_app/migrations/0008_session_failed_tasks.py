from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce


def count_failed(apps, schema_editor):
    Session = apps.get_model("sessions_app", "Session")
    Task = apps.get_model("sessions_app", "Task")
    failed = (
        Task.objects.filter(session=OuterRef("pk"), status="failed")
        .order_by()
        .values("session")
        .annotate(n=Count("id"))
        .values("n")
    )
    Session.objects.filter(tasks__status="failed").update(
        failed_tasks=Coalesce(Subquery(failed), 0)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0007_task_lost"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="failed_tasks",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.RunPython(count_failed, migrations.RunPython.noop),
    ]

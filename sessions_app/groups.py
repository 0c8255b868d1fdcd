"""The two groups that make someone a viewer or an operator.

Written for a data migration (0013_switchboard_groups): each function takes
the migration's `apps`, and makes the permission rows it needs when they do
not exist yet (Django creates permissions after the last migration of a
run, so on a new database they are not there when this runs).
"""

VIEWERS = "Switchboard viewers"
OPERATORS = "Switchboard operators"

# (app label, model, codename, name): what a viewer reads, pages, API and
# admin alike (the admin lists of sessions, tasks, log lines, events and
# questions; 0015 added the questions to groups made before).
LOOK = [
    ("sessions_app", "session", "view_session", "Can view session"),
    ("sessions_app", "task", "view_task", "Can view task"),
    ("logs_app", "logentry", "view_logentry", "Can view log entry"),
    ("sessions_app", "event", "view_event", "Can view event"),
    ("sessions_app", "question", "view_question", "Can view question"),
]
ACT = [
    (
        "sessions_app",
        "session",
        "act_on_session",
        "Can cancel, pause, retry and answer on any session",
    ),
]
GROUPS = {VIEWERS: LOOK, OPERATORS: LOOK + ACT}


def _permission(apps, app_label: str, model: str, codename: str, name: str):
    content_type, _ = apps.get_model("contenttypes", "ContentType").objects.get_or_create(
        app_label=app_label, model=model
    )
    permission, _ = apps.get_model("auth", "Permission").objects.get_or_create(
        content_type=content_type, codename=codename, defaults={"name": name}
    )
    return permission


def create_groups(apps, schema_editor=None) -> None:
    """The groups with their permissions (added to what a group has already)."""
    Group = apps.get_model("auth", "Group")
    for name, wanted in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*(_permission(apps, *row) for row in wanted))


def remove_groups(apps, schema_editor=None) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()

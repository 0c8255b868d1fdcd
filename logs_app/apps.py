from django.apps import AppConfig


class LogsAppConfig(AppConfig):
    name = "logs_app"
    verbose_name = "Logs"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from logs_app.services import use_fold_on_sqlite

        # One case rule for keyword search, in SQL as in Python (services.fold).
        connection_created.connect(use_fold_on_sqlite)
        # Plug the logs:<session_id> channel and log.append events into the core.
        from logs_app import eventfiles, retention, streams
        from operations import stale
        from sessions_app.retention import register_trimmer

        streams.register()
        eventfiles.register()
        # prune --keep-lines: a running session's log kept within a size.
        register_trimmer(retention.trim_sessions)
        # A task's log lines are reports too: a task that logs is not lost.
        stale.register_source(newest_line)


def newest_line(task):
    """When the newest log line of a task arrived (its log.append event's time)."""
    from live.models import Event
    from logs_app.models import LogEntry

    seq = (
        LogEntry.objects.filter(session_id=task.session_id, task_id=task.pk)
        .order_by("-id")
        .values_list("seq", flat=True)
        .first()
    )
    if not seq:
        return None
    return Event.objects.filter(pk=seq).values_list("ts", flat=True).first()

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
        # Log alert rules: matched as lines are stored, told by a sweeper.
        from live import publisher
        from logs_app import alerting

        connect_rule_signals()
        publisher.on_serve(alerting.start)
        eventfiles.register()
        # prune --keep-lines: a running session's log kept within a size.
        register_trimmer(retention.trim_sessions)
        # A task's log lines are reports too: a task that logs is not lost.
        stale.register_source(newest_line)


def connect_rule_signals() -> None:
    """A rule saved or deleted here is reloaded at once; its state row exists."""
    from django.db.models.signals import m2m_changed, post_delete, post_save
    from django.utils import timezone

    from logs_app.models import AlertRule, AlertState
    from logs_app.rules import cache

    def saved(sender, instance, created, **kwargs):
        AlertState.objects.get_or_create(rule=instance)
        cache.forget()

    def hooks_changed(sender, instance, action, **kwargs):
        if action.startswith("post_") and isinstance(instance, AlertRule):
            # The version other processes read moves with the webhooks too.
            AlertRule.objects.filter(pk=instance.pk).update(updated_at=timezone.now())
            cache.forget()

    post_save.connect(saved, sender=AlertRule, weak=False, dispatch_uid="alert_rule_saved")
    post_delete.connect(lambda **kw: cache.forget(), sender=AlertRule, weak=False,
                        dispatch_uid="alert_rule_deleted")  # fmt: skip
    m2m_changed.connect(hooks_changed, sender=AlertRule.webhooks.through, weak=False,
                        dispatch_uid="alert_rule_hooks")  # fmt: skip


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

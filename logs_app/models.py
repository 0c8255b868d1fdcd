import logging

from django.db import models
from django.db.models import Q
from django.utils import timezone

LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
LEVEL_NAMES = {number: name for name, number in LEVELS.items()}


def level_name(levelno: int) -> str:
    """The name of a level; numbers between the standard ones keep a 'Level N' name."""
    return LEVEL_NAMES.get(levelno) or logging.getLevelName(levelno)


class LogEntry(models.Model):
    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="log_entries"
    )
    task = models.ForeignKey(
        "sessions_app.Task",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="log_entries",
    )
    ts = models.DateTimeField(default=timezone.now)
    level = models.PositiveSmallIntegerField(default=logging.INFO)
    logger = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField()
    extra = models.JSONField(null=True, blank=True)
    # Set by the sender for safe retries: one uid is stored once per session.
    uid = models.CharField(max_length=64, null=True, blank=True)
    # The id of the log.append event that carried this line.
    seq = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        verbose_name = "log entry"
        verbose_name_plural = "log entries"
        constraints = [
            models.UniqueConstraint(
                fields=["session", "uid"], condition=Q(uid__isnull=False), name="log_uid_unique"
            )
        ]
        indexes = [
            # Newest lines of a session, paged backwards by id; and by level.
            models.Index(fields=["session", "-id"], name="log_session_idx"),
            models.Index(fields=["session", "level", "-id"], name="log_session_level_idx"),
            models.Index(fields=["session", "task", "-id"], name="log_session_task_idx"),
            models.Index(fields=["session", "ts"], name="log_session_ts_idx"),
            models.Index(fields=["session", "seq"], name="log_session_seq_idx"),
        ]

    def __str__(self) -> str:
        return f"[{level_name(self.level)}] {self.message[:80]}"

    def as_json(self) -> dict:
        return entry_json(*(getattr(self, column) for column in COLUMNS))


# The columns of an entry's JSON, in entry_json's order: a page reads them as
# tuples (values_list) and costs no model instances.
COLUMNS = ("pk", "session_id", "task_id", "ts", "level", "logger", "message", "extra", "uid", "seq")


def entry_json(pk, session_id, task_id, ts, level, logger, message, extra, uid, seq) -> dict:
    """A log entry as the API and the frames show it."""
    return {
        "id": str(pk),
        "session_id": str(session_id),
        "task_id": str(task_id) if task_id else None,
        "ts": ts.isoformat(),
        "level": level_name(level),
        "levelno": level,
        "logger": logger,
        "message": message,
        "extra": extra,
        "uid": uid,
        "seq": seq,
    }

import logging

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from logs_app.patterns import compile_pattern

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


class AlertRule(models.Model):
    """Log lines that raise an alert (logs_app.alerting): those of a session,
    or of every session, at a minimum level, of a task, of a logger (or one
    below it), whose message a regular expression finds; `threshold` of them
    within `window_seconds` fire it, and it then keeps quiet for
    `quiet_seconds`, counting what matches meanwhile for its next alert."""

    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    session = models.ForeignKey(
        "sessions_app.Session",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_rules",
        help_text="Only this session's lines; empty: every session.",
    )
    level = models.PositiveSmallIntegerField(
        default=0,
        choices=[(0, "any level")] + [(number, f"{name}+") for name, number in LEVELS.items()],
        help_text="Lines at this level or above.",
    )
    task = models.ForeignKey(
        "sessions_app.Task",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_rules",
        help_text="Only this task's lines.",
    )
    logger = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="This logger or one below it: “app.db” matches app.db and app.db.pool.",
    )
    pattern = models.TextField(
        blank=True,
        default="",
        help_text="A regular expression (RE2 syntax) found anywhere in the message.",
    )
    threshold = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text="Matching lines needed within the window to fire.",
    )
    window_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(86_400)]
    )
    quiet_seconds = models.PositiveIntegerField(
        default=300,
        validators=[MaxValueValidator(7 * 86_400)],
        help_text="After an alert, matches are only counted for this long, then told in one alert.",
    )
    webhooks = models.ManyToManyField(
        "sessions_app.Webhook",
        blank=True,
        related_name="alert_rules",
        help_text="Only these (active ones); none chosen: every webhook, as other alerts.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Moves on every change (the rule's webhooks too): processes notice it.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "log alert rule"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if self.pattern:
            try:
                compile_pattern(self.pattern)
            except ValueError as error:
                raise ValidationError({"pattern": f"not a valid regular expression: {error}"})
        if self.task_id and self.session_id and self.task.session_id != self.session_id:
            raise ValidationError({"task": "this task is not in the chosen session"})


class AlertState(models.Model):
    """Where a rule stands, for every process at once: written only when a
    line matches (or the sweeper tells pending matches), with the row locked."""

    rule = models.OneToOneField(
        AlertRule, primary_key=True, on_delete=models.CASCADE, related_name="state"
    )
    # Matches not yet in an alert, before it fires: [[epoch, count, [lines]]],
    # one item per batch, those older than the window dropped.
    recent = models.JSONField(default=list)
    # After an alert, until when it is quiet; what matched meanwhile.
    quiet_until = models.DateTimeField(null=True, blank=True)
    pending = models.PositiveIntegerField(default=0)
    pending_since = models.DateTimeField(null=True, blank=True)
    pending_lines = models.JSONField(default=list)
    fired_at = models.DateTimeField(null=True, blank=True)
    fired = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["quiet_until"], condition=Q(pending__gt=0), name="alert_due")
        ]

    def __str__(self) -> str:
        return f"state of {self.rule_id}"

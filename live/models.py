"""The core's tables: the event log, its channels, retention, API tokens and
the live figures of server processes.

They belong to the app label "sessions_app" (Meta.app_label), where they were
first created: their tables, content types, permissions and admin URLs stay
as they are, with no data migration, and their migrations stay in
sessions_app/migrations. This module imports no feature.
"""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


class Event(models.Model):
    """One persisted change. Its id is the `seq` subscribers see.

    Ids are handed out in commit order within each channel of one session
    (live.events takes the session's event lock first), so a cursor never
    steps over an event that commits later; channels that span sessions, and
    readers of every channel at once, stop at live.ordering.horizon().
    session_id and task_id are plain numbers, not foreign keys: the events
    of a deleted session stay, so that resuming clients learn of the delete.
    """

    kind = models.CharField(max_length=32)
    session_id = models.BigIntegerField(null=True, blank=True)
    task_id = models.BigIntegerField(null=True, blank=True)
    # The owner of the session when the event was recorded: who may read it
    # back (it outlives the session, so an owner learns of its deletion).
    owner_id = models.BigIntegerField(null=True, blank=True)
    ts = models.DateTimeField(default=timezone.now)
    # For log.append, only {"count": n}: the lines live in LogEntry (seq = this id).
    data = models.JSONField(default=dict)

    class Meta:
        app_label = "sessions_app"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["session_id", "id"], name="event_session_idx"),
            models.Index(fields=["task_id", "id"], name="event_task_idx"),
            models.Index(fields=["ts"], name="event_ts_idx"),
            models.Index(fields=["owner_id", "id"], name="event_owner_idx"),
            # The actions people took (sessions_app.activity): few among many.
            models.Index(
                fields=["session_id", "id"],
                name="event_action_idx",
                condition=models.Q(data__has_key="by"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class EventChannel(models.Model):
    """An event's place in one channel, with the seq before it in that channel.

    `prev` lets a consumer see at once whether a live frame follows the last
    one it relayed, and read the database only when one went missing.
    """

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="placements")
    channel = models.CharField(max_length=64)
    prev = models.BigIntegerField(default=0)

    class Meta:
        app_label = "sessions_app"
        constraints = [
            models.UniqueConstraint(fields=["channel", "event"], name="event_channel_unique")
        ]

    def __str__(self) -> str:
        return f"{self.channel} @ {self.event_id}"


class Retention(models.Model):
    """Singleton: events with a seq at or below `pruned_through` were deleted."""

    pruned_through = models.BigIntegerField(default=0)

    class Meta:
        app_label = "sessions_app"

    def __str__(self) -> str:
        return f"events pruned through {self.pruned_through}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="switchboard_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    LAST_USED_EVERY = 60  # seconds between writes of last_used_at

    class Meta:
        app_label = "sessions_app"
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user, name: str = "") -> tuple["ApiToken", str]:
        """Create a token; the plain text is returned once and never stored."""
        plain = "sb_" + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, prefix=plain[:10], digest=hash_token(plain)
        )
        return token, plain

    @classmethod
    def authenticate(cls, plain: str):
        """The active user of a token, or None, read from the database (the
        API's requests go through live.tokens, which keeps what this reads)."""
        token = cls.find(hash_token(plain))
        return None if token is None else token.user

    @classmethod
    def find(cls, digest: str) -> "ApiToken | None":
        """The token of `digest` with its user, if that user is active;
        last_used_at written at most once a minute."""
        try:
            token = cls.objects.select_related("user").get(digest=digest)
        except cls.DoesNotExist:
            return None
        if not token.user.is_active:
            return None
        now = timezone.now()
        if (
            token.last_used_at is None
            or (now - token.last_used_at).total_seconds() > cls.LAST_USED_EVERY
        ):
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return token


class ServerProcess(models.Model):
    """The live figures of one server process, written every few seconds, so
    that any process can answer for all of them (connections, subscriptions)."""

    name = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField(db_index=True)
    data = models.JSONField(default=dict)

    class Meta:
        app_label = "sessions_app"

    def __str__(self) -> str:
        return self.name

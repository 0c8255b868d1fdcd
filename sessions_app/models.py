from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

# Acting on any session as a person does (cancel, pause, resume, retry,
# answer), as opposed to seeing it (view_session) or changing it as its
# worker does (change_session); sessions_app.access.can_act.
ACT_PERMISSION = "act_on_session"


class Status(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
TASK_STATUSES = [s for s in Status if s != Status.PAUSED]


class SessionQuerySet(models.QuerySet):
    def by_key(self, key: str) -> "Session | None":
        """The session named by an external_id or, failing that, by an id.

        External ids are unique per owner, and this lookup acts for nobody
        (commands, replays): an ownerless session with that external_id comes
        first, then the one owner's that has it. If several owners have it,
        Session.MultipleObjectsReturned names the key: name the session by id.
        """
        named = self.filter(external_id=key)
        found = named.filter(owner__isnull=True).first()
        if found is None:
            owned = list(named.order_by("pk")[:10])
            if len(owned) > 1:
                ids = ", ".join(str(s.pk) for s in owned)
                raise self.model.MultipleObjectsReturned(
                    f"external_id {key!r} names sessions of several owners "
                    f"(ids {ids}); name the session by its id"
                )
            found = owned[0] if owned else None
        if found is None and key.isascii() and key.isdigit() and int(key) < 2**63:
            found = self.filter(pk=int(key)).first()
        return found


class Session(models.Model):
    # The fields refresh_counts() keeps.
    COUNTS = ("completed_tasks", "total_tasks", "failed_tasks")

    name = models.CharField(max_length=200)
    external_id = models.CharField(max_length=200, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    metadata = models.JSONField(default=dict, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept by Session.refresh_counts() whenever a task is added or changes status.
    completed_tasks = models.PositiveIntegerField(default=0, editable=False)
    total_tasks = models.PositiveIntegerField(default=0, editable=False)
    # Tasks in `failed`: the dashboard's failures show a session with one.
    failed_tasks = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = SessionQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        permissions = [(ACT_PERMISSION, "Can cancel, pause, retry and answer on any session")]
        # An external_id is unique per owner: each user (and the ownerless
        # sessions that commands and replays make) has a namespace of its own,
        # so nobody can claim, or learn of, another user's ids. NULLs are
        # distinct in a unique constraint, hence one for the ownerless.
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "external_id"],
                condition=Q(owner__isnull=False, external_id__isnull=False),
                name="session_owner_external_id_unique",
            ),
            models.UniqueConstraint(
                fields=["external_id"],
                condition=Q(owner__isnull=True, external_id__isnull=False),
                name="session_ownerless_external_id_unique",
            ),
        ]
        indexes = [models.Index(fields=["status", "-id"], name="session_status_idx")]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    def get_absolute_url(self) -> str:
        """Its live page (the admin's "View on site")."""
        return reverse("workspace", args=[self.pk])

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def as_json(self) -> dict:
        return {
            "id": str(self.pk),
            "name": self.name,
            "external_id": self.external_id,
            "status": self.status,
            "metadata": self.metadata,
            "completed_tasks": self.completed_tasks,
            "total_tasks": self.total_tasks,
            "failed_tasks": self.failed_tasks,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }

    def refresh_counts(self) -> bool:
        """Recount tasks from the database; True if the counts changed."""
        counts = self.tasks.order_by().aggregate(
            total=models.Count("id"),
            completed=models.Count("id", filter=Q(status=Status.COMPLETED)),
            failed=models.Count("id", filter=Q(status=Status.FAILED)),
        )
        new = (counts["total"], counts["completed"], counts["failed"])
        changed = new != (self.total_tasks, self.completed_tasks, self.failed_tasks)
        self.total_tasks, self.completed_tasks, self.failed_tasks = new
        return changed


class Task(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="tasks")
    name = models.CharField(max_length=200)
    external_id = models.CharField(max_length=200, null=True, blank=True)
    status = models.CharField(
        max_length=16,
        choices=[(s.value, s.label) for s in TASK_STATUSES],
        default=Status.PENDING,
    )
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    # Someone asked the worker to hold (services.pause_task); cleared on resume,
    # cancel and when the task ends.
    pause_requested = models.BooleanField(default=False)
    # Failed because its worker stopped reporting (services.fail_lost).
    lost = models.BooleanField(default=False)
    attempt = models.PositiveIntegerField(default=1)
    # Seconds without a report after which a running task is failed (None:
    # SWITCHBOARD_STALE_AFTER). See operations/stale.py.
    stale_after = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "external_id"],
                condition=Q(external_id__isnull=False),
                name="task_external_id_unique",
            )
        ]
        indexes = [models.Index(fields=["status", "-id"], name="task_status_idx")]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    def get_absolute_url(self) -> str:
        """Its row on its session's live page."""
        return reverse("workspace", args=[self.session_id]) + f"#task-{self.pk}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def as_json(self) -> dict:
        return {
            "id": str(self.pk),
            "session_id": str(self.session_id),
            "name": self.name,
            "external_id": self.external_id,
            "status": self.status,
            "progress": self.progress,
            "message": self.message,
            "details": self.details,
            "result": self.result,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "pause_requested": self.pause_requested,
            "lost": self.lost,
            "attempt": self.attempt,
            "stale_after": self.stale_after,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class OutputKey(models.Model):
    """The `uid` a worker gave an output chunk or step, and the seq it was
    stored as: a retry with the same uid stores nothing twice and is answered
    that seq. Deleted with its task."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+")
    uid = models.CharField(max_length=64)
    seq = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "uid"], name="output_key_unique")]

    def __str__(self) -> str:
        return f"{self.uid} of task {self.task_id}: seq {self.seq}"


class Webhook(models.Model):
    """A URL that gets every alert (system.alert) as a JSON POST, besides those
    of SWITCHBOARD_WEBHOOKS; its last outcome shows here."""

    url = models.URLField(max_length=500)
    name = models.CharField(max_length=200, blank=True, default="")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_failed_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.name or self.url


class Question(models.Model):
    """A question a job asks on its task, waiting for a person's answer
    (sessions_app.questions). Past `expires_at` it is `expired`, its answer
    its `default`."""

    OPEN, ANSWERED, EXPIRED = "open", "answered", "expired"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="questions")
    prompt = models.TextField()
    choices = models.JSONField(null=True, blank=True)
    default = models.TextField(null=True, blank=True)
    status = models.CharField(
        max_length=16,
        choices=[(s, s) for s in (OPEN, ANSWERED, EXPIRED)],
        default=OPEN,
    )
    answer = models.TextField(null=True, blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # The asker's key: a retry of an ask with it makes no second question.
    uid = models.CharField(max_length=64, null=True, blank=True)
    asked_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "uid"],
                condition=Q(uid__isnull=False),
                name="question_uid_unique",
            )
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="question_status_idx")]

    def __str__(self) -> str:
        return f"{self.prompt[:60]} (#{self.pk})"

    def as_json(self) -> dict:
        """As the API shows it (select_related task and answered_by to list many)."""
        return {
            "id": str(self.pk),
            "task_id": str(self.task_id),
            "session_id": str(self.task.session_id),
            "prompt": self.prompt,
            "choices": self.choices,
            "default": self.default,
            "status": self.status,
            "answer": self.answer,
            "answered_by": self.answered_by.get_username() if self.answered_by_id else None,
            "asked_at": self.asked_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
        }

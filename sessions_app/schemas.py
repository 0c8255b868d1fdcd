"""Request and response shapes of the HTTP API (they make the OpenAPI schema)."""

from datetime import datetime
from typing import Any, Literal

from django.utils import timezone
from ninja import Schema
from pydantic import Field, field_validator

from sessions_app.models import Status

SessionStatus = Literal["pending", "running", "paused", "completed", "failed", "cancelled"]
TaskStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
MAX_TEXT = 1024 * 1024


class SessionIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    metadata: dict[str, Any] | None = None
    external_id: str | None = Field(None, min_length=1, max_length=200)
    status: SessionStatus = Status.PENDING.value


class SessionPatch(Schema):
    name: str = Field(None, min_length=1, max_length=200)
    status: SessionStatus = None
    metadata: dict[str, Any] = None


class SessionOut(Schema):
    id: str
    name: str
    external_id: str | None
    status: SessionStatus
    metadata: dict[str, Any]
    completed_tasks: int
    total_tasks: int
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None


class TaskIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    external_id: str | None = Field(None, min_length=1, max_length=200)
    status: TaskStatus = Status.PENDING.value


class TaskPatch(Schema):
    name: str = Field(None, min_length=1, max_length=200)
    status: TaskStatus = None
    progress: float = Field(None, ge=0, le=100, allow_inf_nan=False)
    message: str = Field(None, max_length=MAX_TEXT)
    details: dict[str, Any] = None
    result: Any = None
    error: str = Field(None, max_length=MAX_TEXT)


class TaskOut(Schema):
    id: str
    session_id: str
    name: str
    external_id: str | None
    status: TaskStatus
    progress: float
    message: str
    details: dict[str, Any]
    result: Any
    error: str
    cancel_requested: bool
    attempt: int
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None


class CancelOut(Schema):
    task: TaskOut
    changed: bool


class OutputIn(Schema):
    chunk: str = Field(max_length=MAX_TEXT)
    final: bool = False


class OutputOut(Schema):
    seq: int
    task: TaskOut


class TaskOutputOut(Schema):
    text: str
    final: bool
    truncated: bool


class Page(Schema):
    count: int
    limit: int
    offset: int
    next_offset: int | None


class SessionPage(Page):
    results: list[SessionOut]


class TaskPage(Page):
    results: list[TaskOut]


class LogEntryIn(Schema):
    message: str = Field(max_length=MAX_TEXT)
    ts: datetime | None = None
    level: int | str = Field(20, description="DEBUG INFO WARNING ERROR CRITICAL, or a number")
    logger: str = Field("", max_length=200)
    task_id: int | str | None = None
    extra: dict[str, Any] | None = None
    uid: str | None = Field(None, min_length=1, max_length=64)

    @field_validator("ts")
    @classmethod
    def aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and timezone.is_naive(value):
            return value.replace(tzinfo=timezone.UTC)
        return value

    @field_validator("level")
    @classmethod
    def known_level(cls, value: int | str) -> int:
        from logs_app.services import parse_level
        from sessions_app.services import ServiceError

        try:
            level = parse_level(value)
        except ServiceError as error:
            raise ValueError(error.message) from None
        if level == 0 and value not in (0, "0"):
            raise ValueError("must be a level name (DEBUG … CRITICAL) or a number")
        return level

    @field_validator("task_id")
    @classmethod
    def task_number(cls, value: int | str | None) -> int | None:
        if value is None or value == "":
            return None
        if isinstance(value, str) and not value.isdigit():
            raise ValueError("must be a task id")
        if int(value) <= 0:
            raise ValueError("must be a task id")
        return int(value)


class LogsIn(Schema):
    entries: list[LogEntryIn] = Field(max_length=10000)


class LogEntryOut(Schema):
    id: str
    session_id: str
    task_id: str | None
    ts: str
    level: str
    levelno: int
    logger: str
    message: str
    extra: dict[str, Any] | None
    uid: str | None
    seq: int


class LogsCreated(Schema):
    stored: int
    skipped: int
    seq: int | None
    first_id: str | None
    last_id: str | None


class LogsOut(Schema):
    entries: list[LogEntryOut]
    has_more: bool
    next_before: str | None


class RateBucket(Schema):
    ts: str
    counts: dict[str, int]


class RateOut(Schema):
    buckets: list[RateBucket]


class EventOut(Schema):
    type: str
    channel: str
    event: str
    seq: int
    ts: str
    data: Any


class EventsOut(Schema):
    results: list[EventOut]
    seq: int
    has_more: bool
    reset: bool


class SnapshotOut(Schema):
    channel: str
    seq: int
    snapshot: dict[str, Any]


class StatsOut(Schema):
    connections: int
    connections_total: int
    channels: int
    subscriptions: dict[str, int]
    messages_sent: int
    events_per_second: float
    last_seq: int
    process: str
    processes: list[dict[str, Any]]
    uptime_seconds: float
    ts: str


class ErrorOut(Schema):
    detail: str
    errors: dict[str, list[str]] | None = None

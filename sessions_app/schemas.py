"""Request and response shapes of the HTTP API (they make the OpenAPI schema)."""

from typing import Any, Literal

from ninja import Schema
from pydantic import Field

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
    paused: int = 0
    layer_messages: int = 0
    events_per_second: float
    last_seq: int
    process: str
    processes: list[dict[str, Any]]
    uptime_seconds: float
    ts: str


class ErrorOut(Schema):
    detail: str
    errors: dict[str, list[str]] | None = None

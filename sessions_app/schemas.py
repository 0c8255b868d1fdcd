"""Request and response shapes of the HTTP API (they make the OpenAPI schema)."""

from typing import Any, Literal

from ninja import Schema
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from live.validation import Input, JsonObject, JsonValue, Text
from sessions_app.models import Status
from sessions_app.rules import PROGRESS_MAX, PROGRESS_MIN, STEP_PATTERN

SessionStatus = Literal["pending", "running", "paused", "completed", "failed", "cancelled"]
TaskStatus = Literal["pending", "running", "completed", "failed", "cancelled"]


class SessionIn(Input):
    name: str = Field(min_length=1, max_length=200)
    metadata: JsonObject() | None = None
    external_id: str | None = Field(None, min_length=1, max_length=200)
    status: SessionStatus = Status.PENDING.value


class SessionPatch(Input):
    name: str = Field(None, min_length=1, max_length=200)
    status: SessionStatus = None
    metadata: JsonObject() = None


class SessionOut(Schema):
    id: str
    name: str
    external_id: str | None
    status: SessionStatus
    metadata: dict[str, Any]
    completed_tasks: int
    total_tasks: int
    failed_tasks: int
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None


class TaskIn(Input):
    name: str = Field(min_length=1, max_length=200)
    external_id: str | None = Field(None, min_length=1, max_length=200)
    status: TaskStatus = Status.PENDING.value
    stale_after: int | None = Field(
        None, ge=1, le=10**7, description="seconds without a report before a running task fails"
    )


class TaskPatch(Input):
    name: str = Field(None, min_length=1, max_length=200)
    status: TaskStatus = None
    progress: float = Field(None, ge=PROGRESS_MIN, le=PROGRESS_MAX, allow_inf_nan=False)
    message: Text() = None
    details: JsonObject() = None
    result: JsonValue("result") = None
    error: Text() = None
    stale_after: int | None = Field(
        None, ge=1, le=10**7, description="seconds without a report before a running task fails"
    )


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
    pause_requested: bool
    lost: bool
    attempt: int
    stale_after: int | None
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None


class RetryIn(Input):
    send: bool = Field(
        True, description="false: record the new attempt only, never send a Celery task again"
    )


class SentOut(Schema):
    """What a retry sent to run the work again (sessions_app/resend.py)."""

    sent: bool
    to: str
    name: str | None
    celery_id: str | None
    reason: str | None


class RetryOut(TaskOut):
    sent: SentOut | None


class CancelOut(Schema):
    task: TaskOut
    changed: bool


class PauseOut(Schema):
    task: TaskOut
    changed: bool


class OutputIn(Input):
    """A chunk of streamed output, or a status step between chunks (not both)."""

    chunk: Text("chunk") | None = None
    final: bool = False
    status: str | None = Field(
        None,
        pattern=STEP_PATTERN,
        description="a step: thinking, tool_calling, tool_completed, completed, or another word",
    )
    message: Text() | None = None
    data: JsonObject() | None = None
    uid: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="the writer's id for this chunk or step: a retry with it stores nothing twice",
    )

    @model_validator(mode="after")
    def chunk_or_step(self):
        if (self.chunk is None) == (self.status is None):
            raise PydanticCustomError(
                "chunk_or_status", "give either `chunk` (output) or `status` (a step)"
            )
        if self.chunk is not None and (self.message is not None or self.data is not None):
            raise PydanticCustomError(
                "step_fields", "`message` and `data` belong to a step (with `status`)"
            )
        return self


class OutputOut(Schema):
    seq: int
    task: TaskOut


class TaskOutputOut(Schema):
    text: str
    final: bool
    truncated: bool
    steps: list[dict[str, Any]]


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


class QuestionOut(Schema):
    id: str
    task_id: str
    session_id: str
    prompt: str
    choices: list[str] | None
    default: str | None
    status: Literal["open", "answered", "expired"]
    answer: str | None
    answered_by: str | None
    asked_at: str
    expires_at: str | None
    answered_at: str | None

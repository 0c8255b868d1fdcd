"""Request and response shapes of the log API (they make the OpenAPI schema)."""

from typing import Any

from ninja import Schema
from pydantic import Field, field_validator

from live.errors import Refused
from live.validation import Input, Instant, JsonObject, Text
from logs_app.services import parse_level


class LogEntryIn(Input):
    message: Text("log_message")
    ts: Instant | None = None
    level: int | str = Field(20, description="DEBUG INFO WARNING ERROR CRITICAL, or a number")
    logger: str = Field("", max_length=200)
    task_id: int | str | None = None
    extra: JsonObject() | None = None
    uid: str | None = Field(None, min_length=1, max_length=64)

    @field_validator("level")
    @classmethod
    def known_level(cls, value: int | str) -> int:
        try:
            level = parse_level(value)
        except Refused as error:
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
        if isinstance(value, str) and (not value.isascii() or len(value) > 19):
            raise ValueError("must be a task id")
        if not 0 < int(value) <= 2**63 - 1:
            raise ValueError("must be a task id")
        return int(value)


class LogsIn(Input):
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

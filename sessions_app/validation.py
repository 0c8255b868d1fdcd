"""Values that Python takes and PostgreSQL refuses, refused at the edge, once.

PostgreSQL refuses NUL in text and `\\u0000` in jsonb, `NaN` / `Infinity` in
jsonb (Python's json reads them, and 1e999 as infinity), and UTC offsets
beyond ±15:59; it stores, but psycopg cannot read back, a timestamp whose
offset moves it past 9999-12-31 or before 0001-01-01 in UTC, which would make
every later read of that log fail. Request schemas inherit `Clean` (query
parameters) or `Input` (bodies: unknown fields refused too), so every field is
checked and a refusal names it.
"""

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from ninja import Schema
from pydantic import BaseModel, ConfigDict, field_validator

MAX_OFFSET = timedelta(hours=15, minutes=59)


def problem(value: Any, depth: int = 0) -> str | None:
    """What makes a JSON value unstorable, or None."""
    if isinstance(value, str):
        return "must not contain NUL (\\u0000) characters" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number (no NaN or Infinity)"
    if isinstance(value, dict):
        for key, item in value.items():
            found = problem(key, depth + 1) or problem(item, depth + 1)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            found = problem(item, depth + 1)
            if found:
                return found
    elif isinstance(value, datetime):
        return timestamp_problem(value)
    return None


def timestamp_problem(value: datetime) -> str | None:
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        return "the UTC offset must be within ±15:59"
    try:
        instant = value.astimezone(UTC) if offset is not None else value
    except OverflowError:
        return "must fall between 0001-01-01 and 9999-12-31 in UTC"
    if instant.year < 1 or instant.year > 9999:  # pragma: no cover - astimezone raises first
        return "must fall between 0001-01-01 and 9999-12-31 in UTC"
    return None


def storable(cls, value: Any) -> Any:
    found = problem(value)
    if found:
        raise ValueError(found)
    return value


class Clean(Schema):
    """Every field checked for values the database refuses."""

    storable = field_validator("*", mode="after")(classmethod(storable))


class Input(BaseModel):
    """A request body: every field checked as in `Clean`, and fields it does
    not know are refused, by name.

    Plain pydantic, not ninja's Schema: a body is validated from parsed JSON,
    never from an object's attributes, and ninja's Schema validates a model
    that forbids unknown fields twice, the second time through an attribute
    wrapper; for a batch of 500 log lines that was 11 ms a request."""

    model_config = ConfigDict(extra="forbid")

    storable = field_validator("*", mode="after")(classmethod(storable))

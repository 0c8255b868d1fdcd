"""Values that Python takes and the database, the socket or a browser refuses,
refused at the edge, once.

- Text must be valid Unicode: a lone surrogate (`"\\ud800"`) passes
  `json.loads` and Python `str`, then fails when encoded to UTF-8 (on a
  socket, in PostgreSQL). NUL (`\\u0000`) is refused too: PostgreSQL keeps
  none in text or jsonb.
- Numbers must be finite: `NaN` / `Infinity` (and 1e999, read as infinity)
  are not JSON and jsonb refuses them.
- Times: a time without a UTC offset is taken as UTC (`as_utc`, the one
  place that says so); offsets beyond ±15:59 are refused, and so is a time
  that its offset moves past 9999-12-31 or before 0001-01-01 in UTC (stored,
  psycopg could not read it back).
- Sizes: every value that can reach a socket frame is bounded (`Text`,
  `JsonObject`, in UTF-8 bytes), so that every event frame fits under
  daphne's 1 MiB message limit (see LIMITS and docs/PROTOCOL.md, "Limits").

Request schemas inherit `Clean` (query parameters) or `Input` (bodies:
unknown fields refused too), so every field is checked and a refusal names
it.
"""

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from ninja import Schema
from pydantic import AfterValidator, BaseModel, ConfigDict, TypeAdapter, field_validator
from pydantic import ValidationError as PydanticError

from live.errors import Refused

MAX_OFFSET = timedelta(hours=15, minutes=59)
KiB = 1024

# The most, in UTF-8 bytes, that one value may hold. An event frame carries
# at most: task.update: message + error + details + result (448 KiB);
# a log.append frame: lines up to LOG_FRAME_BYTES (logs_app); an output chunk
# alone. All stay well under the 1 MiB a socket frame may have.
LIMITS = {
    "text": 64 * KiB,  # a task's message and error, a step's message
    "object": 64 * KiB,  # metadata, details, a step's data, a log line's extra (as JSON)
    "result": 256 * KiB,  # a task's result (as JSON)
    "chunk": 512 * KiB,  # one chunk of streamed output
    "log_message": 256 * KiB,  # one log line
}


def text_problem(value: str) -> str | None:
    """What makes a string unstorable or unsendable, or None."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000) characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (no lone surrogates such as \\ud800)"
    return None


def problem(value: Any, depth: int = 0) -> str | None:
    """What makes a JSON value unstorable, or None."""
    if isinstance(value, str):
        return text_problem(value)
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


def as_utc(value: datetime) -> datetime:
    """A time without a UTC offset is taken as UTC (PROTOCOL.md)."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value


def utf8_size(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def _within(limit: int):
    def check(value: str) -> str:
        if len(value) > limit or (len(value) * 4 > limit and utf8_size(value) > limit):
            raise ValueError(f"must be at most {limit // KiB} KiB (UTF-8)")
        return value

    return AfterValidator(check)


def _json_within(limit: int):
    def check(value: Any) -> Any:
        if value is not None and json_size(value) > limit:
            raise ValueError(f"must be at most {limit // KiB} KiB as JSON")
        return value

    return AfterValidator(check)


def json_size(value: Any) -> int:
    """The bytes `value` takes as compact JSON (non-ASCII as UTF-8)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return utf8_size(text)


def Text(limit: str = "text"):  # noqa: N802 - a type, as pydantic's are
    """A string of at most LIMITS[limit] UTF-8 bytes."""
    return Annotated[str, _within(LIMITS[limit])]


def JsonValue(limit: str = "object"):  # noqa: N802
    """Any JSON value of at most LIMITS[limit] bytes as JSON."""
    return Annotated[Any, _json_within(LIMITS[limit])]


def JsonObject(limit: str = "object"):  # noqa: N802
    """A JSON object of at most LIMITS[limit] bytes as JSON."""
    return Annotated[dict[str, Any], _json_within(LIMITS[limit])]


# A time; without an offset, in UTC.
Instant = Annotated[datetime, AfterValidator(as_utc)]
_instant = TypeAdapter(Instant)


def parse_instant(raw: str, field: str) -> datetime:
    """A time from text (ISO 8601, a date alone meaning its midnight, in UTC
    unless it says otherwise), as the API reads one; Refused naming `field`."""
    try:
        value = _instant.validate_python(raw)
    except PydanticError:
        raise Refused("must be an ISO 8601 time", field=field) from None
    found = timestamp_problem(value)
    if found:
        raise Refused(found, field=field)
    return value


WHOLE_MAX = 2**63 - 1


def whole_number(value: Any, field: str, minimum: int = 0) -> int | None:
    """A whole number from `minimum` to 2^63 - 1, from JSON (a number, or its
    ASCII digits as a string); None when absent or empty. 1.5 is refused, not
    rounded; so are booleans and digits past 64 bits. The one rule for seqs
    and ids wherever a client sends one (socket frames, log filters, queries)."""
    if value is None or value == "":
        return None
    wrong = Refused(f"must be a whole number from {minimum} to {WHOLE_MAX}", field=field)
    if isinstance(value, bool):
        raise wrong
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            raise wrong
        value = int(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    if not isinstance(value, int) or not minimum <= value <= WHOLE_MAX:
        raise wrong
    return value


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

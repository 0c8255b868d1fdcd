"""Event files, line by line: the kinds a file may hold, and each line read and checked.

A file is read whole and checked before anything is applied
(sessions_app.eventfiles): the first bad line raises ReplayError naming it.
Another app adds the kinds it replays with `register()` (logs_app: log.append).
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import ValidationError

from live.errors import Refused
from live.validation import as_utc, problem, timestamp_problem
from sessions_app.schemas import OutputIn, SessionPatch, TaskPatch

CORE_KINDS = {
    "session.update",
    "session.deleted",
    "task.update",
    "task.deleted",
    "progress.update",
    "task.output",
}
TASK_KINDS = {"task.update", "task.deleted", "progress.update", "task.output"}
# Kinds a replay reads but does not apply: it makes them again itself (an
# alert comes from the failure it announces).
DERIVED_KINDS = {"system.alert"}


@dataclass
class Kind:
    """An event kind another app replays: `check(data)` validates a line's data
    (ValueError with a message naming the field) and returns what `apply`
    needs; `apply(replay, line, session_id)` applies it through its services.
    `models` get their id sequences moved past replayed ids."""

    check: Callable[[dict], Any]
    apply: Callable[[Any, "Line", int], None]  # (the Replay, the line, its session id)
    models: tuple = ()


_kinds: dict[str, Kind] = {}


def register(kind: str, handler: Kind) -> None:
    _kinds[kind] = handler


def known_kinds() -> set[str]:
    return CORE_KINDS | DERIVED_KINDS | set(_kinds)


class ReplayError(Refused):
    """A line that cannot be replayed (a `Refused` naming the field `line`);
    `line`: its number, `replayed`: how many lines before it were."""

    def __init__(self, line: int, message: str, replayed: int = 0) -> None:
        super().__init__(f"line {line}: {message}", field="line")
        self.line = line
        self.replayed = replayed

    def __str__(self) -> str:
        return self.message


@dataclass
class Line:
    number: int
    ts: datetime | None
    kind: str
    session: str
    task: str | None
    data: dict
    checked: Any = None


def describe(error: ValidationError, prefix: str = "data") -> str:
    """The first problem of a validation error, naming the field."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{prefix}.{where}: {first['msg']}" if where else f"{prefix}: {first['msg']}"


def parse_lines(lines: Iterator[str]) -> list[Line]:
    """Read and check every line; the first bad one raises ReplayError with its number."""
    parsed = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError as error:
            raise ReplayError(number, f"not valid JSON ({error})") from None
        if not isinstance(item, dict):
            raise ReplayError(number, "each line must be a JSON object")
        kind = item.get("event")
        kinds = known_kinds()
        if kind not in kinds:
            raise ReplayError(number, f"unknown event {kind!r}; one of {', '.join(sorted(kinds))}")
        session = item.get("session")
        if isinstance(session, int) and not isinstance(session, bool):
            session = str(session)
        if not isinstance(session, str) or not session:
            raise ReplayError(number, "session must name a session by id or external_id")
        found = key_problem(session)
        if found:
            raise ReplayError(number, f"session {found}")
        data = item.get("data")
        if not isinstance(data, dict):
            raise ReplayError(number, "data must be an object")
        ts = None
        if item.get("ts") is not None:
            try:
                ts = datetime.fromisoformat(str(item["ts"]))
            except ValueError:
                raise ReplayError(number, f"ts {item['ts']!r} is not an ISO 8601 time") from None
            ts = as_utc(ts)
            if timestamp_problem(ts):
                raise ReplayError(number, f"ts {timestamp_problem(ts)}")
        task = item.get("task") or data.get("task_id")
        if kind == "task.update" and not task:
            task = data.get("id")
        if kind in TASK_KINDS and not task:
            raise ReplayError(number, f"{kind} needs the task (field 'task' or data.task_id)")
        found = key_problem(str(task)) if task else None
        if found:
            raise ReplayError(number, f"task {found}")
        for name in ("external_id", "name"):
            value = data.get(name)
            found = None if value is None else key_problem(value)
            if found and kind in ("session.update", "task.update"):
                raise ReplayError(number, f"data.{name} {found}")
        line = Line(number, ts, kind, session, str(task) if task else None, data)
        try:
            if kind == "session.update":
                SessionPatch(**_pick(data, SessionPatch))
            elif kind in ("task.update", "progress.update"):
                TaskPatch(**_pick(data, TaskPatch))
            elif kind == "task.output":
                # A chunk or a step, checked and bounded as over HTTP.
                OutputIn(**_pick(data, OutputIn))
            elif kind in _kinds:
                try:
                    line.checked = _kinds[kind].check(data)
                except ValueError as error:
                    raise ReplayError(number, str(error)) from None
        except ValidationError as error:
            raise ReplayError(number, describe(error)) from None
        parsed.append(line)
    return parsed


def _pick(data: dict, schema) -> dict:
    names = _field_names(schema)
    return {k: v for k, v in data.items() if k in names}


@cache
def _field_names(schema) -> frozenset[str]:
    # Once a schema: pydantic builds `model_fields` anew at each access.
    return frozenset(schema.model_fields)


def key_problem(key: Any) -> str | None:
    """What makes a line's name of a session or task (an id, an external_id
    or a name) unusable, or None."""
    if not isinstance(key, str):
        return "must be text"
    if len(key) > 200:
        return "must be at most 200 characters"
    found = problem(key)
    if found:
        return found
    if key.isdigit() and not (key.isascii() and int(key) <= 2**63 - 1):
        return "is not an id (digits past 2^63, or not ASCII digits)"
    return None

"""log.append lines in event files: checked with the API's own schema and
replayed through the log service (plugged into sessions_app.eventfiles)."""

from pydantic import ValidationError

from logs_app import services
from logs_app.models import LogEntry
from logs_app.schemas import LogEntryIn
from sessions_app import eventfiles


def check(data: dict) -> list[dict]:
    entries = data.get("entries")
    if not isinstance(entries, list):
        raise ValueError("data.entries must be a list")
    checked = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"data.entries.{index} must be an object")
        known = {k: v for k, v in entry.items() if k in LogEntryIn.model_fields}
        try:
            checked.append(LogEntryIn(**known).model_dump())
        except ValidationError as error:
            raise ValueError(eventfiles.describe(error, f"data.entries.{index}")) from None
    return checked


def apply(replay: eventfiles.Replay, line: eventfiles.Line, session_id: int) -> None:
    entries = []
    for entry in line.checked:
        task_key = entry.get("task_id")
        task_id = replay.task_id(session_id, str(task_key)) if task_key else None
        entries.append(dict(entry, task_id=task_id))
    services.append_entries(session_id, entries)


def register() -> None:
    eventfiles.register("log.append", eventfiles.Kind(check=check, apply=apply, models=(LogEntry,)))

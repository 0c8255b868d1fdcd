"""What `switchboard_client.celery` records of a task run so that the server
can send it again (Retry pressed): the task's registered name, its arguments
in JSON, where it was routed. Kept in the task's `details` under `celery`:

    {"name": "app.tasks.resize", "id": "<celery id>", "root_id": "...",
     "parent_id": null, "exchange": "", "routing_key": "celery",
     "args": [1, 2], "kwargs": {"size": 3}, "sendable": true}

`record_arguments`: True keeps both (the default), "args" keeps the
positional ones only (`kwargs` is then null and `kwargs_kept_out` true: a
retry runs with the args alone, the task's defaults for the rest), False
keeps neither and the run is not sendable. Arguments over `MOST` bytes of
JSON, or that JSON (or PostgreSQL) cannot hold, are left out and the run is
not sendable; `why` says which.
"""

from __future__ import annotations

import json
from typing import Any

# The header the server sends a retried run with: the Switchboard task it repeats.
HEADER = "switchboard_task_id"
MOST = 16 * 1024  # bytes of JSON for args and kwargs together


def check_record_arguments(value: Any) -> bool | str:
    if not (value is True or value is False or value == "args"):
        raise ValueError(f"record_arguments must be True, False or 'args', not {value!r}")
    return value


def call_of(task, args, kwargs, record: bool | str) -> dict:
    """The `celery` entry of a run's details (see the module's docstring)."""
    req = task.request
    delivery = getattr(req, "delivery_info", None) or {}
    call: dict[str, Any] = {
        "name": task.name,
        "id": req.id,
        "root_id": req.root_id,
        "parent_id": req.parent_id,
        "exchange": delivery.get("exchange") or "",
        "routing_key": delivery.get("routing_key"),
        "args": None,
        "kwargs": None,
        "sendable": False,
    }
    if record is False:
        call["why"] = "arguments not recorded (record_arguments=False)"
        return call
    kept = {"args": list(args or ())}
    if record is True:
        kept["kwargs"] = dict(kwargs or {})
    else:
        call["kwargs_kept_out"] = True
    text, why = _json(kept)
    if why is None and len(text.encode("utf-8")) > MOST:
        why = f"arguments over {MOST} bytes of JSON"
    if why is not None:
        call["why"] = why
        return call
    call.update(json.loads(text), sendable=True)
    return call


def _json(value: Any) -> tuple[str, str | None]:
    """The arguments as JSON (dates, UUIDs, decimals and bytes the way Celery's
    own JSON serializer writes them, so the worker reads them back alike), or
    why they cannot be kept."""
    try:
        from kombu.utils.json import dumps
    except ImportError:  # pragma: no cover - Celery brings kombu
        dumps = json.dumps
    try:
        text = dumps(value)
        parsed = json.loads(text, parse_constant=_refuse)  # no NaN or Infinity
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")  # no lone surrogates
    except (TypeError, ValueError, UnicodeError, RecursionError) as error:
        return "", f"arguments not JSON ({type(error).__name__})"
    if "\\u0000" in text or "\x00" in text:
        return "", "arguments hold a NUL character"
    return text, None


def _refuse(constant: str):
    raise ValueError(f"{constant} is not JSON")


def resent_id(request) -> str | None:
    """The Switchboard task a run was sent again for (the server's header), if any."""
    for source in (
        getattr(request, "headers", None),
        getattr(request, "_request_dict", None),
        getattr(request, "__dict__", None),
    ):
        if isinstance(source, dict) and source.get(HEADER):
            return str(source[HEADER])
    return None

"""Each change of a session or task becomes its event, on its channels.

`service_write()` wraps every change: one transaction for the rows and their
events, the alerts the change raised, and a mark that keeps the model signals
quiet (they record events only for changes made outside the services).
"""

import time
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from django.db import transaction

from live import events, stats
from operations import alerts
from sessions_app import channels
from sessions_app.models import Session, Task

UNSET: Any = object()

# True while a service function writes: the model signals then stay quiet,
# because the service records its own events (no double publishing).
_in_service: ContextVar[bool] = ContextVar("switchboard_in_service", default=False)


def in_service() -> bool:
    return _in_service.get()


@contextmanager
def service_write():
    token = _in_service.set(True)
    started = time.perf_counter()
    collecting = alerts.collecting()
    try:
        with transaction.atomic():
            yield
            alerts.flush(collecting)
            collecting = None
    finally:
        _in_service.reset(token)
        if collecting is not None:  # rolled back: nothing to announce
            alerts.abandon(collecting)
    if not transaction.get_connection().in_atomic_block:
        stats.live.wrote(time.perf_counter() - started)


# --- events -------------------------------------------------------------------


def session_channels(session_id: int) -> list[str]:
    return channels.of_session(session_id)


def acted(action: str, by: str | None) -> dict:
    """What an event caused by a person's (or the system's) action adds to its
    data: the action, and the acting user's username (`by`; None: the system)."""
    return {"action": action, "by": by}


def record_session(
    session: Session, ts: datetime | None = None, into=None, action: dict | None = None
) -> None:
    events.record(
        "session.update",
        session_channels(session.pk),
        session_id=session.pk,
        data={**session.as_json(), **(action or {})},
        extras={"owner_id": session.owner_id},
        ts=ts,
        into=into,
    )


def task_channels(task: Task) -> list[str]:
    return channels.of_task(task.pk, task.session_id)


def owner_of(session_id: int) -> int | None:
    return Session.objects.values_list("owner_id", flat=True).filter(pk=session_id).first()


def record_task(
    task: Task,
    ts: datetime | None = None,
    owner_id: int | None = UNSET,
    into=None,
    action: dict | None = None,
) -> None:
    """`action`: acted(...), when a person's action caused the change."""
    events.record(
        "task.update",
        task_channels(task),
        session_id=task.session_id,
        task_id=task.pk,
        data={**task.as_json(), **(action or {})},
        extras={"owner_id": owner_of(task.session_id) if owner_id is UNSET else owner_id},
        ts=ts,
        into=into,
    )


def record_progress(task: Task, session: Session, ts: datetime | None = None, into=None) -> None:
    events.record(
        "progress.update",
        task_channels(task),
        session_id=task.session_id,
        task_id=task.pk,
        extras={"owner_id": session.owner_id},
        data={
            "task_id": str(task.pk),
            "session_id": str(task.session_id),
            "progress": task.progress,
            "message": task.message,
            "details": task.details,
            "completed_tasks": session.completed_tasks,
            "total_tasks": session.total_tasks,
        },
        ts=ts,
        into=into,
    )


def record_output(
    task: Task, owner_id: int | None, fields: dict, ts: datetime | None = None, into=None
) -> events.Recorded:
    """A chunk of a task's output or a step (sessions_app.output) as task.output."""
    places = [channels.task(task.pk)]
    if "status" in fields:
        # Steps are few: the session's watchers see what each task is doing.
        places.append(channels.session(task.session_id))
    return events.record(
        "task.output",
        places,
        session_id=task.session_id,
        task_id=task.pk,
        extras={"owner_id": owner_id},
        data={"task_id": str(task.pk), **fields, "attempt": task.attempt},
        ts=ts,
        into=into,
    )

"""The only way sessions and tasks change: each function writes the change
and its events in one transaction. The API, the socket's cancel_task, the
admin, the signals and the commands all come through here.
"""

import math
import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from live import events, stats
from live.errors import Refused
from live.validation import json_size
from operations import alerts
from sessions_app.models import TASK_STATUSES, TERMINAL, Session, Status, Task


class ServiceError(Refused):
    """A change refused for a reason the caller can fix; `field` names the culprit."""

    def __init__(self, field: str, message: str, code: str = "invalid") -> None:
        super().__init__(message, code=code, field=field)


UNSET: Any = object()
# A status step's name, and how many of an attempt's steps a snapshot carries.
STEP_RE = re.compile(r"^[a-z_]{1,32}$")
MAX_STEPS = 200
# Bytes of steps a snapshot carries at most (each step's data and message are
# bounded where they come in; see validation.LIMITS).
STEPS_BUDGET = 128 * 1024

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
    return ["sessions", f"session:{session_id}"]


def record_session(session: Session, ts: datetime | None = None) -> None:
    events.record(
        "session.update",
        session_channels(session.pk),
        session_id=session.pk,
        data=session.as_json(),
        extras={"owner_id": session.owner_id},
        ts=ts,
    )


def task_channels(task: Task) -> list[str]:
    return [f"session:{task.session_id}", f"task:{task.pk}", "tasks"]


def owner_of(session_id: int) -> int | None:
    return Session.objects.values_list("owner_id", flat=True).filter(pk=session_id).first()


def record_task(task: Task, ts: datetime | None = None, owner_id: int | None = UNSET) -> None:
    events.record(
        "task.update",
        task_channels(task),
        session_id=task.session_id,
        task_id=task.pk,
        data=task.as_json(),
        extras={"owner_id": owner_of(task.session_id) if owner_id is UNSET else owner_id},
        ts=ts,
    )


def record_progress(task: Task, session: Session, ts: datetime | None = None) -> None:
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
    )


# --- validation ---------------------------------------------------------------


def _check_status(value: str, allowed: list[str], field: str = "status") -> Status:
    if value not in allowed:
        raise ServiceError(field, f"must be one of: {', '.join(allowed)}")
    return Status(value)


def _check_progress(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ServiceError("progress", "must be a number from 0 to 100")
    value = float(value)
    if not math.isfinite(value) or value < 0 or value > 100:
        raise ServiceError("progress", "must be a number from 0 to 100")
    return value


def _check_transition(current: str, new: Status, what: str) -> None:
    if current in TERMINAL and new not in TERMINAL:
        hint = "; retry the task for a new attempt" if what == "task" else ""
        raise ServiceError("status", f"a {current} {what} cannot become {new.value}{hint}")


def _stamp(obj: Session | Task, status: Status, now: datetime) -> None:
    alerts.ended(obj, status)
    if status == Status.RUNNING and obj.started_at is None:
        obj.started_at = now
    if status in TERMINAL:
        obj.finished_at = obj.finished_at or now
    elif obj.finished_at is not None:
        obj.finished_at = None


# --- locks ------------------------------------------------------------------------
#
# One order everywhere, so that writers never wait for each other in a circle:
# the session row, then its task rows (by id), then the event lock (taken by
# events.record, last). Rows are locked FOR NO KEY UPDATE: that does not
# conflict with the KEY SHARE locks that inserting a log line or a task takes
# on the rows it refers to, so log ingest never waits for a task update.


# Asked with the locked session before a change: raises to refuse it.
Check = Callable[[Session], None]


def lock_task(task_id: int, check: Check | None = None) -> tuple[Session, Task]:
    """Lock a task's session, then the task, for a change; `check(session)`,
    when given, may refuse it (the caller's right to change it) once locked.

    Plain SQL, two statements: these are on the path of every report, and
    building them through the ORM cost more than running them."""
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else ""
    sessions, tasks = Session._meta.db_table, Task._meta.db_table
    found = list(
        Session.objects.raw(
            f"SELECT * FROM {sessions} WHERE id = (SELECT session_id FROM {tasks} WHERE id = %s)"
            + lock,
            [task_id],
        )
    )
    if not found:
        raise Task.DoesNotExist("no such task")
    session = found[0]
    if check is not None:
        check(session)
    found = list(Task.objects.raw(f"SELECT * FROM {tasks} WHERE id = %s" + lock, [task_id]))
    if not found:  # deleted with its session, which we now hold: cannot happen
        raise Task.DoesNotExist("no such task")
    return session, found[0]


def _insert(obj: Session | Task, same: QuerySet) -> Session | Task | None:
    """Insert a new row; None if it went in. If another request inserted the
    same external_id at the same moment (PostgreSQL waits for it to commit),
    the unique constraint refuses ours: answer that other one, read from
    `same`, which holds only the rows the caller has a right to (the same
    owner's, the same session's)."""
    try:
        with transaction.atomic():
            obj.save(force_insert=True)
    except IntegrityError:
        winner = same.first() if obj.external_id is not None else None
        if winner is None:
            raise
        return winner
    return None


# --- sessions -----------------------------------------------------------------


def create_session(
    *,
    name: str,
    metadata: dict | None = None,
    external_id: str | None = None,
    owner=None,
    status: str = Status.PENDING,
    ts: datetime | None = None,
    pk: int | None = None,
) -> tuple[Session, bool]:
    """Create a session; with an `external_id` that `owner` has used already,
    return that session (created=False).

    External ids are unique per owner (None, for commands, is one owner too),
    and both the lookup and the re-read after a lost race ask only for that
    owner's rows: a caller is never handed, nor told of, another's session."""
    status = _check_status(status, list(Status.values))
    mine = Session.objects.filter(external_id=external_id, owner=owner)
    with service_write():
        if external_id is not None:
            existing = mine.first()
            if existing is not None:
                return existing, False
        now = ts or timezone.now()
        session = Session(
            pk=pk,
            name=name,
            metadata=metadata or {},
            external_id=external_id,
            owner=owner,
            status=status,
            created_at=now,
            updated_at=now,
        )
        _stamp(session, status, now)
        winner = _insert(session, mine)
        if winner is not None:
            return winner, False
        record_session(session, ts=ts)
    return session, True


def update_session(
    session_id: int,
    *,
    status: str = UNSET,
    metadata: dict = UNSET,
    name: str = UNSET,
    ts: datetime | None = None,
) -> Session:
    with service_write():
        session = Session.objects.select_for_update(no_key=True).get(pk=session_id)
        now = ts or timezone.now()
        if status is not UNSET:
            new = _check_status(status, list(Status.values))
            _check_transition(session.status, new, "session")
            session.status = new
            _stamp(session, new, now)
        if metadata is not UNSET:
            session.metadata = metadata
        if name is not UNSET:
            session.name = name
        session.updated_at = now
        session.save()
        record_session(session, ts=ts)
    return session


def cancel_session(session_id: int) -> Session:
    """Cancel every task that has not ended, then the session itself."""
    with service_write():
        session = Session.objects.select_for_update(no_key=True).get(pk=session_id)
        for task in (
            session.tasks.select_for_update(no_key=True).exclude(status__in=TERMINAL).order_by("id")
        ):
            _cancel(task)
        if not session.is_terminal:
            now = timezone.now()
            session.status = Status.CANCELLED
            _stamp(session, Status.CANCELLED, now)
            session.updated_at = now
        session.refresh_counts()
        session.save()
        record_session(session)
    return session


def delete_sessions(ids) -> int:
    """Delete sessions (their tasks and logs with them), each recorded as
    session.deleted. The sessions are locked first, in id order, as every
    writer locks a session before its tasks: a delete racing reports on its
    tasks waits for them (or they for it), never the two for each other."""
    with transaction.atomic():
        locked = list(
            Session.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("id")
            .values_list("pk", flat=True)
        )
        Session.objects.filter(pk__in=locked).delete()
    return len(locked)


def delete_tasks(ids) -> int:
    """Delete tasks, each recorded as task.deleted, their sessions locked
    first (see delete_sessions)."""
    with transaction.atomic():
        sessions = set(Task.objects.filter(pk__in=ids).values_list("session_id", flat=True))
        list(Session.objects.select_for_update(no_key=True).filter(pk__in=sessions).order_by("id"))
        tasks = Task.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("id")
        locked = list(tasks.values_list("pk", flat=True))
        Task.objects.filter(pk__in=locked).delete()
    return len(locked)


# --- tasks --------------------------------------------------------------------


def create_task(
    session_id: int,
    *,
    name: str,
    external_id: str | None = None,
    status: str = Status.PENDING,
    stale_after: int | None = None,
    ts: datetime | None = None,
    pk: int | None = None,
) -> tuple[Task, bool]:
    status = _check_status(status, [s.value for s in TASK_STATUSES])
    with service_write():
        session = Session.objects.select_for_update(no_key=True).get(pk=session_id)
        if external_id is not None:
            existing = session.tasks.filter(external_id=external_id).first()
            if existing is not None:
                return existing, False
        now = ts or timezone.now()
        task = Task(
            pk=pk,
            session=session,
            name=name,
            external_id=external_id,
            status=status,
            stale_after=stale_after,
            created_at=now,
            updated_at=now,
        )
        _stamp(task, status, now)
        winner = _insert(task, session.tasks.filter(external_id=external_id))
        if winner is not None:
            return winner, False
        _follow_task(session, task, now)
        session.refresh_counts()
        session.updated_at = now
        session.save()
        record_task(task, ts=ts, owner_id=session.owner_id)
        record_session(session, ts=ts)
    return task, True


def _follow_task(session: Session, task: Task, now: datetime) -> None:
    """A session that has not started starts when one of its tasks does."""
    if task.status == Status.RUNNING and session.status == Status.PENDING:
        session.status = Status.RUNNING
        _stamp(session, Status.RUNNING, now)


def update_task(
    task_id: int,
    *,
    status: str = UNSET,
    progress: float = UNSET,
    message: str = UNSET,
    details: dict = UNSET,
    result: Any = UNSET,
    error: str = UNSET,
    name: str = UNSET,
    stale_after: int | None = UNSET,
    ts: datetime | None = None,
    check: Check | None = None,
) -> Task:
    """Apply a worker's report. A report carrying progress, message or details
    records one progress.update (and starts a pending task); any other change
    records a task.update. `check`: as for lock_task."""
    if progress is not UNSET:
        progress = _check_progress(progress)
    new_status = UNSET
    if status is not UNSET:
        new_status = _check_status(status, [s.value for s in TASK_STATUSES])
    with service_write():
        session, task = lock_task(task_id, check)
        refuse_if_lost(task)
        now = ts or timezone.now()
        changed = False
        if stale_after is not UNSET and stale_after != task.stale_after:
            task.stale_after = stale_after
            changed = True
        if new_status is not UNSET and new_status != task.status:
            _check_transition(task.status, new_status, "task")
            task.status = new_status
            _stamp(task, new_status, now)
            if new_status in TERMINAL:
                task.cancel_requested = False
            if new_status == Status.COMPLETED and progress is UNSET:
                task.progress = 100.0
            changed = True
        for field, value in (("result", result), ("error", error), ("name", name)):
            if value is not UNSET and value != getattr(task, field):
                setattr(task, field, value)
                changed = True
        reports_progress = any(v is not UNSET for v in (progress, message, details))
        if reports_progress and new_status is UNSET and task.status == Status.PENDING:
            # A worker reporting progress has started, whether or not it said so.
            task.status = Status.RUNNING
            _stamp(task, Status.RUNNING, now)
            changed = True
        if progress is not UNSET:
            task.progress = progress
        if message is not UNSET:
            task.message = message
        if details is not UNSET:
            task.details = details
        task.updated_at = now
        if not changed:  # a report: only what it carries
            reported = zip(
                ("progress", "message", "details"), (progress, message, details), strict=True
            )
            task.save(update_fields=[f for f, v in reported if v is not UNSET] + ["updated_at"])
        else:
            task.save()
            before = session.status
            _follow_task(session, task, now)
            if session.refresh_counts() or session.status != before:
                session.updated_at = now
                session.save()
                record_session(session, ts=ts)
            record_task(task, ts=ts, owner_id=session.owner_id)
        if reports_progress:
            record_progress(task, session, ts=ts)
    return task


def refuse_if_lost(task: Task) -> None:
    """A worker reporting on a task that was failed for want of its reports
    is told so (409), not let back in silently; a retry starts a new attempt."""
    if task.lost and task.status == Status.FAILED:
        raise ServiceError(
            "status",
            f"task {task.pk} failed at {task.finished_at:%Y-%m-%d %H:%M:%S} UTC: {task.error};"
            f" POST /api/v1/tasks/{task.pk}/retry starts a new attempt",
            code="conflict",
        )


def fail_lost(task_id: int, last_report: Callable[[Task], datetime], default: int) -> bool:
    """Fail a running task whose worker has not reported for its stale_after.
    Checked again under the task's lock, so of several processes one does it."""
    with service_write():
        session, task = lock_task(task_id)
        limit = task.stale_after or default
        if task.status != Status.RUNNING or not limit:
            return False
        silent = (timezone.now() - last_report(task)).total_seconds()
        if silent < limit:
            return False
        # Marked first, so the event of the failure below carries it.
        Task.objects.filter(pk=task_id).update(lost=True)
        update_task(
            task_id,
            status=Status.FAILED,
            error=f"no report for {limit} s: the worker is presumed lost (stale_after {limit} s)",
        )
    return True


def _cancel(task: Task) -> bool:
    """Cancel one locked task in place; False when there is nothing to do."""
    if task.is_terminal or task.cancel_requested:
        return False
    now = timezone.now()
    if task.status == Status.RUNNING:
        task.cancel_requested = True
    else:
        task.status = Status.CANCELLED
        _stamp(task, Status.CANCELLED, now)
    task.updated_at = now
    task.save()
    record_task(task)
    return True


def cancel_task(task_id: int) -> tuple[Task, bool]:
    """A pending task is cancelled at once; a running one is asked to stop
    (`cancel_requested`); an ended one is left as it is (changed=False)."""
    with service_write():
        session, task = lock_task(task_id)
        changed = _cancel(task)
        if changed and session.refresh_counts():
            session.save()
            record_session(session)
    return task, changed


def retry_task(task_id: int) -> Task:
    """Start a new attempt of an ended task: back to pending, progress 0."""
    with service_write():
        session, task = lock_task(task_id)
        if not task.is_terminal:
            raise ServiceError(
                "status", f"only an ended task can be retried; this one is {task.status}"
            )
        now = timezone.now()
        task.attempt += 1
        task.status = Status.PENDING
        task.progress = 0.0
        task.message = ""
        task.error = ""
        task.result = None
        task.cancel_requested = task.lost = False
        task.started_at = task.finished_at = None
        task.updated_at = now
        task.save()
        if session.refresh_counts():
            session.save()
            record_session(session)
        record_task(task)
    return task


def append_output(
    task_id: int,
    chunk: str,
    final: bool = False,
    ts: datetime | None = None,
    check: Check | None = None,
):
    """Record one chunk of a task's streamed output (tokens, stdout).
    `check(session)`, when given, may refuse it first."""
    return _output(task_id, {"chunk": chunk, "final": bool(final)}, ts, check)


def append_step(
    task_id: int,
    status: str,
    message: str | None = None,
    data: dict | None = None,
    ts: datetime | None = None,
    check: Check | None = None,
):
    """Record a status step in a task's output stream (thinking, a tool call
    and its end), in order with the chunks; nothing is overwritten.
    `check`: as for append_output."""
    if not isinstance(status, str) or not STEP_RE.match(status):
        raise ServiceError("status", "a step's status is a lowercase word (a-z and _, at most 32)")
    if data is not None and not isinstance(data, dict):
        raise ServiceError("data", "a step's data is a JSON object")
    if message is not None and not isinstance(message, str):
        raise ServiceError("message", "a step's message is text")
    step = {"status": status, "message": message or "", "data": data or {}}
    return _output(task_id, step, ts, check)


def _output(task_id: int, fields: dict, ts: datetime | None, check: Check | None):
    with service_write():
        task = (
            Task.objects.select_related("session")
            .only(
                "id",
                "session_id",
                "attempt",
                "status",
                "error",
                "lost",
                "finished_at",
                "session__owner_id",
            )
            .get(pk=task_id)
        )
        if check is not None:
            check(task.session)
        refuse_if_lost(task)
        channels = [f"task:{task.pk}"]
        if "status" in fields:
            # Steps are few: the session's watchers see what each task is doing.
            channels.append(f"session:{task.session_id}")
        return events.record(
            "task.output",
            channels,
            session_id=task.session_id,
            task_id=task.pk,
            extras={"owner_id": task.session.owner_id},
            data={"task_id": str(task.pk), **fields, "attempt": task.attempt},
            ts=ts,
        )


def latest_steps(session: Session, scan: int = 500) -> dict:
    """The newest step of each running task of the session, by task id, from
    the newest `scan` events of its channel (steps are placed there too)."""
    from live.models import Event, EventChannel

    running = set(session.tasks.filter(status=Status.RUNNING).values_list("pk", flat=True)[:200])
    if not running:
        return {}
    recent = EventChannel.objects.filter(channel=f"session:{session.pk}").order_by("-event_id")
    ids = list(recent.values_list("event_id", flat=True)[:scan])
    found = {}
    rows = (
        Event.objects.filter(pk__in=ids, kind="task.output", task_id__in=running)
        .order_by("-id")
        .values_list("id", "ts", "task_id", "data")
    )
    size = 0
    for seq, ts, task_id, data in rows:
        if str(task_id) not in found and "status" in data:
            step = {k: data.get(k) for k in ("status", "message", "data")}
            step = {**step, "seq": seq, "ts": ts.isoformat()}
            size += json_size(step)
            if size > STEPS_BUDGET and found:
                break  # a snapshot frame has room for so much
            found[str(task_id)] = step
    return found


def task_output(task: Task, limit_chars: int = 65536) -> dict:
    """The streamed output of the task's current attempt: its tail, and whether it ended."""
    from live.models import Event

    chunks = []
    steps = []
    size = steps_size = 0
    final = None
    rows = (
        Event.objects.filter(task_id=task.pk, kind="task.output", session_id=task.session_id)
        .order_by("-id")
        .values_list("id", "ts", "data")
    )
    for scanned, (seq, ts, data) in enumerate(rows.iterator()):
        if data.get("attempt", 1) != task.attempt:
            break
        if size >= limit_chars and scanned > 2000:
            break  # enough text; older steps are in the event log
        if "status" in data and "chunk" not in data:
            if len(steps) < MAX_STEPS and steps_size <= STEPS_BUDGET:
                step = {k: data.get(k) for k in ("status", "message", "data")}
                steps_size += json_size(step)
                if steps_size > STEPS_BUDGET and steps:
                    continue  # the newest steps that fit in a frame
                # `after`: characters of output that came after it, for placing it.
                steps.append({**step, "seq": seq, "ts": ts.isoformat(), "after": size})
            continue
        if final is None:
            final = bool(data.get("final"))
        if size < limit_chars:
            chunks.append(data.get("chunk", ""))
            size += len(chunks[-1])
        elif len(steps) >= MAX_STEPS or steps_size > STEPS_BUDGET:
            break
    text = "".join(reversed(chunks))[-limit_chars:]
    for step in steps:
        # Where in `text` it came: 0 when before the kept tail.
        step["at"] = max(0, len(text) - step.pop("after"))
    return {
        "text": text,
        "final": bool(final),
        "truncated": size > limit_chars,
        "steps": list(reversed(steps)),
    }

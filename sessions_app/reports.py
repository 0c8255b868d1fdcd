"""Reports on the tasks of one session: applied in memory, written at once.

A worker's report (`PATCH /tasks/<id>`, an item of a batch, a line of a
replay) changes its task in memory, under the session's and the task's row
locks; `write()` then stores every changed task in one UPDATE, the session
in one, and every event in one statement (live.events.Pending). One report
or a thousand: the same rules, and a number of statements that does not grow
with them.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from live import events
from live.errors import Refused
from operations import alerts
from sessions_app.locks import Check, lock_task
from sessions_app.models import TASK_STATUSES, TERMINAL, Session, Status, Task
from sessions_app.recording import (
    UNSET,
    record_output,
    record_progress,
    record_session,
    record_task,
)
from sessions_app.rules import check_progress, check_status, check_transition

TASK_STATUS_VALUES = [s.value for s in TASK_STATUSES]
# What a report may change on a task (all of it is written when its status,
# result, error or name changed; only what it carried when it reported progress).
REPORTED = ("progress", "message", "details")
CHANGED = (
    "status",
    *REPORTED,
    "result",
    "error",
    "name",
    "stale_after",
    "cancel_requested",
    "pause_requested",
    "started_at",
    "finished_at",
    "updated_at",
)


def stamp(obj: Session | Task, status: Status, now: datetime) -> None:
    """What a new status sets: its start, its end, and an alert when it ends badly."""
    alerts.ended(obj, status)
    if status == Status.RUNNING and obj.started_at is None:
        obj.started_at = now
    if status in TERMINAL:
        obj.finished_at = obj.finished_at or now
    elif obj.finished_at is not None:
        obj.finished_at = None


def follow_task(session: Session, task: Task, now: datetime) -> None:
    """A session that has not started starts when one of its tasks does."""
    if task.status == Status.RUNNING and session.status == Status.PENDING:
        session.status = Status.RUNNING
        stamp(session, Status.RUNNING, now)


def refuse_if_lost(task: Task) -> None:
    """A worker reporting on a task that was failed for want of its reports
    is told so (409), not let back in silently; a retry starts a new attempt."""
    if task.lost and task.status == Status.FAILED:
        when = f" at {task.finished_at:%Y-%m-%d %H:%M:%S} UTC" if task.finished_at else ""
        raise Refused(
            f"task {task.pk} failed{when}: {task.error};"
            f" POST /api/v1/tasks/{task.pk}/retry starts a new attempt",
            field="status",
            code="conflict",
        )


class Reports:
    """The locked tasks of one session, changed by reports, written together.

    Use inside a service write (sessions_app.recording.service_write), as a
    context: leaving it without an error writes what changed."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.tasks: dict[int, Task | LightTask] = {}
        self.events = events.Pending()
        self._changed: dict[int, set[str]] = {}
        self._session_changed = False
        self._counted = False
        # The seq of the newest event written here (0: none yet).
        self.last_seq = 0

    @classmethod
    def of_task(cls, task_id: int, check: Check | None = None) -> "Reports":
        """For one task: its session and it locked (lock_task); `check(session)` may refuse."""
        session, task = lock_task(task_id, check)
        reports = cls(session)
        reports._hold(task)
        return reports

    @classmethod
    def of_session(
        cls, session_id: int, task_ids=(), check: Check | None = None, light: bool = False
    ) -> "Reports":
        """For tasks of one session: the session locked, then the tasks, by
        id; `check(session)` may refuse once the session is locked; `light`:
        as for lock()."""
        session = Session.objects.select_for_update(no_key=True).get(pk=session_id)
        if check is not None:
            check(session)
        reports = cls(session)
        reports.lock(task_ids, light)
        return reports

    def __enter__(self) -> "Reports":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.write()

    def lock(self, task_ids, light: bool = False) -> None:
        """Lock and load those of these tasks of the session not held yet (one
        query); `light`: only what a progress report reads, as LightTask
        values (the whole model is loaded, in one query, for a report that
        needs it)."""
        wanted = set(task_ids) - set(self.tasks)
        if wanted:
            found = (
                Task.objects.select_for_update(no_key=True)
                .filter(session_id=self.session.pk, pk__in=wanted)
                .order_by("id")
            )
            if light:
                for row in _light_rows(found, self.session.pk, wanted):
                    self.tasks[row[0]] = LightTask(*row)
                return
            for task in found:
                self._hold(task)

    def _hold(self, task: Task) -> None:
        task.session = self.session
        self.tasks[task.pk] = task

    def _whole(self, task: "Task | LightTask") -> Task:
        """The task as a model, for a report that may change more than its
        progress: a light one is loaded whole (one query; its row is locked),
        keeping what reports before changed in memory."""
        if isinstance(task, Task):
            return task
        whole = Task.objects.get(pk=task.pk)
        for name in LIGHT:
            setattr(whole, name, getattr(task, name))
        if task.updated_at is not None:  # reported on before
            whole.updated_at = task.updated_at
        self._hold(whole)
        return whole

    def task(self, task_id: int) -> "Task | LightTask":
        """A task of the session, locked (Refused if the session has no such task)."""
        if task_id not in self.tasks:
            self.lock([task_id])
        try:
            return self.tasks[task_id]
        except KeyError:
            raise Refused(
                f"session {self.session.pk} has no task {task_id}", code="not_found"
            ) from None

    def report(
        self,
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
    ) -> "Task | LightTask":
        """Apply a worker's report. A report carrying progress, message or
        details records one progress.update (and starts a pending task); any
        other change records a task.update. Everything is checked before
        anything changes: a refused report leaves the task as it was."""
        if progress is not UNSET:
            progress = check_progress(progress)
        new_status = UNSET
        if status is not UNSET:
            new_status = check_status(status, TASK_STATUS_VALUES)
        task = self.task(task_id)
        refuse_if_lost(task)
        if new_status is not UNSET and new_status != task.status:
            check_transition(task.status, new_status, "task")
        more = (status, result, error, name, stale_after)
        if task.status == Status.PENDING or any(value is not UNSET for value in more):
            task = self._whole(task)  # it may change more than progress: all of it is written
        session = self.session
        now = ts or timezone.now()
        was = task.status
        changed = False
        if stale_after is not UNSET and stale_after != task.stale_after:
            task.stale_after = stale_after
            changed = True
        if new_status is not UNSET and new_status != task.status:
            task.status = new_status
            stamp(task, new_status, now)
            if new_status in TERMINAL:
                task.cancel_requested = task.pause_requested = False
            if new_status == Status.COMPLETED and progress is UNSET:
                task.progress = 100.0
            changed = True
        for field, value in (("result", result), ("error", error), ("name", name)):
            if value is not UNSET and value != getattr(task, field):
                setattr(task, field, value)
                changed = True
        reported = dict(zip(REPORTED, (progress, message, details), strict=True))
        reported = {field: value for field, value in reported.items() if value is not UNSET}
        if reported and new_status is UNSET and task.status == Status.PENDING:
            # A worker reporting progress has started, whether or not it said so.
            task.status = Status.RUNNING
            stamp(task, Status.RUNNING, now)
            changed = True
        for field, value in reported.items():
            setattr(task, field, value)
        task.updated_at = now
        if not changed:  # a report: only what it carries
            self._changed.setdefault(task.pk, set()).update([*reported, "updated_at"])
        else:
            self._changed.setdefault(task.pk, set()).update(CHANGED)
            before = session.status
            follow_task(session, task, now)
            if self._recount(was, task.status) or session.status != before:
                session.updated_at = now
                self._session_changed = True
                record_session(session, ts=now, into=self.events)
            record_task(task, ts=now, owner_id=session.owner_id, into=self.events)
        if reported:
            record_progress(task, session, ts=now, into=self.events)
        return task

    def output(self, task_id: int, fields: dict, ts: datetime | None = None) -> events.Recorded:
        """A chunk of the task's output, or a step (sessions_app.output)."""
        task = self.task(task_id)
        refuse_if_lost(task)
        return record_output(task, self.session.owner_id, fields, ts=ts, into=self.events)

    def _recount(self, was: str, now: str) -> bool:
        """The session's task counts after a task went from `was` to `now`;
        True if they changed. Counted from the rows once (none of the
        statuses changed here is written yet), then kept here."""
        session = self.session
        before = (session.total_tasks, session.completed_tasks, session.failed_tasks)
        if not self._counted:
            session.refresh_counts()
            self._counted = True
        session.completed_tasks += (now == Status.COMPLETED) - (was == Status.COMPLETED)
        session.failed_tasks += (now == Status.FAILED) - (was == Status.FAILED)
        return (session.total_tasks, session.completed_tasks, session.failed_tasks) != before

    def write(self) -> None:
        """Store what changed: the tasks in one UPDATE (two when some were
        light: those write only what a progress report changes), the
        session, the events."""
        groups: dict[bool, tuple[list, set[str]]] = {}
        for pk, names in self._changed.items():
            task = self.tasks[pk]
            changed, fields = groups.setdefault(isinstance(task, LightTask), ([], set()))
            changed.append(task)
            fields.update(names)
        for changed, fields in groups.values():
            if len(changed) == 1 and isinstance(changed[0], Task):
                changed[0].save(update_fields=sorted(fields))
            else:
                _update(changed, sorted(fields))
        if self._session_changed:
            self.session.save()
        stored = self.events.store()
        if stored:
            self.last_seq = stored[-1].id
        self._changed.clear()
        self._session_changed = False


# What a progress report on a running task reads and writes.
LIGHT = (
    "id", "session_id", "status", "lost", "error", "finished_at", "attempt", *REPORTED,
)  # fmt: skip


def _light_rows(found: QuerySet, session_id: int, ids: set[int]) -> list[tuple]:
    """The LIGHT columns of the tasks `found` selects (these of the session,
    locked, by id), as rows. On PostgreSQL in plain SQL with the ids as one
    array: through the ORM, binding a placeholder for each of a hundred ids
    cost more than running the query."""
    if connection.vendor != "postgresql":
        return list(found.values_list(*LIGHT))
    quote = connection.ops.quote_name
    columns = ", ".join(quote(Task._meta.get_field(name).column) for name in LIGHT)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {quote(Task._meta.db_table)}"
            " WHERE session_id = %s AND id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
            [session_id, sorted(ids)],
        )
        rows = cursor.fetchall()
    # The one column whose value the database gives as text (the field reads it).
    details, at = Task._meta.get_field("details"), LIGHT.index("details")
    return [
        (*row[:at], details.from_db_value(row[at], None, connection), *row[at + 1 :])
        for row in rows
    ]


@dataclass(slots=True)
class LightTask:
    """The columns of a task's row (LIGHT, in that order) that a progress
    report on a running task reads and writes: a progress-only batch loads
    a hundred of these as rows, not as models (building the models cost
    more than the query). Reports.report makes it a model when a report
    needs more (Reports._whole)."""

    id: int
    session_id: int
    status: str
    lost: bool
    error: str
    finished_at: datetime | None
    attempt: int
    progress: float
    message: str
    details: dict
    updated_at: datetime | None = None

    @property
    def pk(self) -> int:
        return self.id


def _update(tasks: list[Task], names: list[str]) -> None:
    """Write these fields of these tasks in one statement: on PostgreSQL an
    UPDATE from the rows as JSON, elsewhere one prepared UPDATE run for each
    (bulk_update's CASE for each field and row cost more to build than the
    writes). No signals: the events are the services' own."""
    fields = [Task._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    table = quote(Task._meta.db_table)
    if connection.vendor == "postgresql":
        rows = [
            {
                "id": task.pk,
                **{f.column: _json_value(getattr(task, f.attname)) for f in fields},
            }
            for task in tasks
        ]
        columns = ", ".join(f"{quote(f.column)} {f.db_type(connection)}" for f in fields)
        sets = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
        sql = (
            f"UPDATE {table} SET {sets} FROM jsonb_to_recordset(%s::jsonb)"
            f" AS v(id bigint, {columns}) WHERE {table}.id = v.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [json.dumps(rows)])
        return
    sets = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    rows = [
        [*(f.get_db_prep_save(getattr(task, f.attname), connection) for f in fields), task.pk]
        for task in tasks
    ]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {sets} WHERE id = %s", rows)


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value

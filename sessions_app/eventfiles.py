"""Event files: JSON Lines, one event a line, oldest first (PROTOCOL.md).

    {"ts": ..., "event": "task.update", "session": "<id or external_id>",
     "task": "<task id>", "seq": 1831, "data": {...}}

`exporting.export()` writes them from the event log; `Replay` checks a whole file
first, then applies it through the services, so a replay records the same
events as the original run and subscribers watch it happen.
"""

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.management.color import no_style
from django.db import connection, transaction

from live.errors import Refused
from sessions_app import output, rules, services
from sessions_app.eventlines import (  # noqa: F401 (the format's names, for callers)
    CORE_KINDS,
    DERIVED_KINDS,
    TASK_KINDS,
    Kind,
    Line,
    ReplayError,
    _kinds,
    describe,
    key_problem,
    known_kinds,
    parse_lines,
    register,
)
from sessions_app.models import Session, Task
from sessions_app.recording import service_write
from sessions_app.reports import Reports

# The kinds of line a replay applies as reports (sessions_app.reports).
REPORTS = {"task.update", "progress.update", "task.output"}

# --- replay -------------------------------------------------------------------------


# Lines a replay commits at once at most, and the longest a batch stays open.
BATCH_LINES = 500
BATCH_SECONDS = 0.25


class _Batch:
    """Lines applied in one service write until there are BATCH_LINES of them
    or BATCH_SECONDS have passed: one commit for many events, while a server
    watching the database still hears of them within a fraction of a second.
    `before_commit` writes what is held in memory (Replay.write)."""

    def __init__(self, before_commit: Callable[[], None]) -> None:
        self.write = None
        self.before_commit = before_commit
        self.lines = 0
        self.started = 0.0

    def begin(self) -> None:
        if self.write is None:
            self.write = service_write()
            self.write.__enter__()
            self.lines, self.started = 0, time.monotonic()

    def applied(self) -> None:
        self.lines += 1
        if self.lines >= BATCH_LINES or time.monotonic() - self.started >= BATCH_SECONDS:
            self.commit()

    def commit(self) -> None:
        if self.write is not None:
            try:
                self.before_commit()
            except BaseException:
                self.rollback()
                raise
            write, self.write = self.write, None
            write.__exit__(None, None, None)

    def rollback(self) -> None:
        if self.write is not None:
            write, self.write = self.write, None
            error = RuntimeError("replay stopped")
            write.__exit__(RuntimeError, error, None)


class Replay:
    """Applies checked lines through the services, keeping the file's timing /
    speed. The reports, output and steps of one session in a row are applied
    as a batch's are (sessions_app.reports): in memory, written together when
    the batch commits or another kind of line comes."""

    def __init__(
        self, lines: list[Line], speed: float = 1.0, sleep=time.sleep, as_new: bool = False
    ) -> None:
        self.lines = lines
        self.speed = speed
        self.sleep = sleep
        # New copies: every session and task of the file made anew (new ids,
        # the same names, no external ids), none looked up in the database.
        self.as_new = as_new
        self.sessions: dict[str, int] = {}
        self.tasks: dict[tuple[int, str], int] = {}
        self.created_ids = False
        self.reports: Reports | None = None
        # The tasks the last reports of each session held (by session id).
        self.held: dict[int, set[int]] = {}

    def write(self) -> None:
        """Write the reports held in memory (before any other change, and at a commit)."""
        if self.reports is not None:
            reports, self.reports = self.reports, None
            reports.write()
            self.held[reports.session.pk] = set(reports.tasks)

    def of_session(self, session_id: int) -> Reports:
        """The session's reports; the tasks the last ones held locked at
        once (one query, not one as each task's first line comes)."""
        if self.reports is None or self.reports.session.pk != session_id:
            self.write()
            self.reports = Reports.of_session(session_id, self.held.get(session_id, ()))
        return self.reports

    def run(self, progress: Callable[[int, int], None] | None = None) -> int:
        self.check_sessions()
        previous: datetime | None = None
        batch = _Batch(self.write)
        try:
            for done, line in enumerate(self.lines, start=1):
                if self.speed > 0 and line.ts is not None and previous is not None:
                    gap = (line.ts - previous).total_seconds() / self.speed
                    gap = min(gap, MAX_GAP_SECONDS)
                    if gap > 0:
                        batch.commit()  # what came before is seen while we wait
                        self.sleep(gap)
                previous = line.ts or previous
                batch.begin()
                try:
                    if line.kind in REPORTS:  # checked before anything changes
                        self.apply(line)
                    else:  # a savepoint: a refused line leaves the lines before it
                        with transaction.atomic():
                            self.apply(line)
                except Refused as error:
                    batch.commit()
                    message = f"{error.field}: {error.message}"
                    raise ReplayError(line.number, message, replayed=done - 1) from None
                batch.applied()
                if progress:
                    progress(done, len(self.lines))
            batch.commit()
        except BaseException:
            self.reports = None
            batch.rollback()
            raise
        finally:
            if self.created_ids:
                _reset_sequences()
        return len(self.lines)

    def apply(self, line: Line) -> None:
        data = line.data
        if line.kind in DERIVED_KINDS:
            return
        if line.kind not in REPORTS:
            self.write()
        if line.kind == "session.deleted":
            session_id = self._find_session(line.session)
            if session_id is not None:
                Session.objects.filter(pk=session_id).delete()
            return
        session_id = self._session(line)
        if line.kind == "session.update":
            current = Session.objects.get(pk=session_id)
            fields = _changed(current, data, ("status", "metadata", "name"))
            if rules.transition_problem(current.status, fields.get("status"), "session"):
                fields.pop("status", None)  # an ended session does not start again
            if fields:
                services.update_session(session_id, **fields)
        elif line.kind in _kinds:
            _kinds[line.kind].apply(self, line, session_id)
        elif line.kind == "task.deleted":
            task_id = self._find_task(session_id, line.task)
            if task_id is not None:
                Task.objects.filter(pk=task_id).delete()
        else:
            known = data if line.kind == "task.update" else None
            task_id = self._task(session_id, line.task, known)
            reports = self.of_session(session_id)
            if line.kind == "task.output" and "chunk" not in data:
                fields = output.step_fields(data["status"], data.get("message"), data.get("data"))
                reports.output(task_id, fields)
            elif line.kind == "task.output":
                reports.output(task_id, output.chunk_fields(data["chunk"], data.get("final")))
            elif line.kind == "progress.update":
                # An exported task.update already carried these values; do not repeat them.
                fields = _changed(reports.task(task_id), data, ("progress", "message", "details"))
                if fields:
                    reports.report(task_id, **fields)
            else:
                self._task_update(session_id, task_id, data)

    def _task_update(self, session_id: int, task_id: int, data: dict) -> None:
        task = self.of_session(session_id).task(task_id)
        attempt = data.get("attempt")
        if isinstance(attempt, int) and attempt > task.attempt and task.is_terminal:
            self.write()
            services.retry_task(task_id)
            task = self.of_session(session_id).task(task_id)
        fields = _changed(
            task, data, ("status", "progress", "message", "details", "result", "error", "name")
        )
        if rules.transition_problem(task.status, fields.get("status"), "task"):
            fields.pop("status", None)  # an ended task does not start again
        pause = data.get("pause_requested")
        pausable = not task.is_terminal and not (pause and task.cancel_requested)
        if isinstance(pause, bool) and pause != task.pause_requested and pausable:
            self.write()
            (services.pause_task if pause else services.resume_task)(task_id)
        if data.get("cancel_requested") and not task.cancel_requested and not task.is_terminal:
            self.write()
            services.cancel_task(task_id)
        if fields.get("error") is None:
            fields.pop("error", None)
        if fields:
            self.of_session(session_id).report(task_id, **fields)

    # Sessions and tasks are found by external_id, then by id; unknown ones are
    # created, keeping the file's id when it is free (so an export replayed into
    # an empty database gives back the same ids). A replay acts for no owner:
    # a session's external_id names an ownerless session first, then the one
    # owner's that has it (Session.objects.by_key); new sessions are ownerless.

    def check_sessions(self) -> None:
        """Before any change: an external_id that several owners use names no
        one session (replays act for no owner), so the file must use its id."""
        if self.as_new:
            return
        checked = set()
        for line in self.lines:
            if line.session not in checked:
                checked.add(line.session)
                try:
                    self._find_session(line.session)
                except Session.MultipleObjectsReturned as error:
                    raise ReplayError(line.number, f"session: {error}") from None

    def _find_session(self, key: str) -> int | None:
        if key in self.sessions or self.as_new:
            return self.sessions.get(key)
        session = Session.objects.by_key(key)
        if session is not None:
            self.sessions[key] = session.pk
        return self.sessions.get(key)

    def _session(self, line: Line) -> int:
        found = self._find_session(line.session)
        if found is not None:
            return found
        data = line.data if line.kind == "session.update" else {}
        external_id = data.get("external_id")
        if external_id is None and not line.session.isdigit():
            external_id = line.session
        wanted = _free_id(Session, data.get("id") or line.session)
        if self.as_new:
            external_id = wanted = None
        session, _ = services.create_session(
            name=data.get("name") or f"replayed {line.session}",
            metadata=data.get("metadata") or {},
            external_id=external_id,
            status=data.get("status", "pending"),
            pk=wanted,
        )
        self.created_ids |= wanted is not None
        self.sessions[line.session] = session.pk
        return session.pk

    def _find_task(self, session_id: int, key: str | None) -> int | None:
        if key is None:
            return None
        if (session_id, key) in self.tasks or self.as_new:
            return self.tasks.get((session_id, key))
        tasks = Task.objects.filter(session_id=session_id)
        found = tasks.filter(external_id=key).values_list("pk", flat=True).first()
        if found is None and key.isascii() and key.isdigit() and int(key) < 2**63:
            found = tasks.filter(pk=int(key)).values_list("pk", flat=True).first()
        if found is not None:
            self.tasks[(session_id, key)] = found
        return found

    def task_id(self, session_id: int, key: str) -> int:
        """The task a line names (by external_id or id), created if unknown."""
        return self._task(session_id, key, None)

    def _task(self, session_id: int, key: str, data: dict | None) -> int:
        found = self._find_task(session_id, key)
        if found is not None:
            return found
        self.write()
        data = data or {}
        external_id = data.get("external_id")
        if external_id is None and not key.isdigit():
            external_id = key
        wanted = _free_id(Task, data.get("id") or key)
        if self.as_new:
            external_id = wanted = None
        task, _ = services.create_task(
            session_id,
            name=data.get("name") or f"replayed {key}",
            external_id=external_id,
            status=data.get("status", "pending"),
            pk=wanted,
        )
        self.created_ids |= wanted is not None
        self.tasks[(session_id, key)] = task.pk
        return task.pk


def _changed(obj, data: dict, names: tuple[str, ...]) -> dict:
    """The fields of `data` whose values differ from the object's."""
    return {k: data[k] for k in names if k in data and data[k] != getattr(obj, k)}


# A file's id is kept for a new row only up to this: a line naming session
# 9223372036854775807 must not move the id sequence to its end.
KEEP_ID_MAX = 2**40
# The longest pause a replay keeps (after --speed); longer ones are cut to it.
MAX_GAP_SECONDS = 60.0


def _free_id(model, key: Any) -> int | None:
    key = str(key)
    if not (key.isascii() and key.isdigit()) or int(key) > KEEP_ID_MAX:
        return None
    pk = int(key)
    return None if model.objects.filter(pk=pk).exists() else pk


def _reset_sequences() -> None:
    """After rows were created with explicit ids, move PostgreSQL's sequences past them."""
    models = [Session, Task, *(m for kind in _kinds.values() for m in kind.models)]
    statements = connection.ops.sequence_reset_sql(no_style(), models)
    if statements:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)

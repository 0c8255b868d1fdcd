"""The only way sessions and tasks change: each function writes the change
and its events in one transaction. The API, the socket's cancel_task, the
admin, the signals and the commands all come through here.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from live.errors import Refused
from sessions_app.locks import Check, insert_once, lock_task
from sessions_app.models import TASK_STATUSES, TERMINAL, Session, Status, Task
from sessions_app.recording import UNSET, acted, record_session, record_task, service_write
from sessions_app.reports import Reports, follow_task, stamp
from sessions_app.rules import check_status, check_transition

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
    status = check_status(status, list(Status.values))
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
        stamp(session, status, now)
        winner = insert_once(session, mine)
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
            new = check_status(status, list(Status.values))
            check_transition(session.status, new, "session")
            session.status = new
            stamp(session, new, now)
        if metadata is not UNSET:
            session.metadata = metadata
        if name is not UNSET:
            session.name = name
        session.updated_at = now
        session.save()
        record_session(session, ts=ts)
    return session


def cancel_session(session_id: int, *, by: str | None = None) -> Session:
    """Cancel every task that has not ended, then the session itself. `by`:
    the acting user's username (None: the system), in the events' data."""
    action = acted("cancel", by)
    with service_write():
        session = Session.objects.select_for_update(no_key=True).get(pk=session_id)
        for task in (
            session.tasks.select_for_update(no_key=True).exclude(status__in=TERMINAL).order_by("id")
        ):
            _cancel(task, action)
        if not session.is_terminal:
            now = timezone.now()
            session.status = Status.CANCELLED
            stamp(session, Status.CANCELLED, now)
            session.updated_at = now
        session.refresh_counts()
        session.save()
        record_session(session, action=action)
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
    """Add a task; with an `external_id` the session has already, that task
    (created=False). Under the session's lock, so a session that settles
    (sessions_app.settling) and a task created at the same moment come one
    after the other. An ended session takes it and keeps its status."""
    status = check_status(status, [s.value for s in TASK_STATUSES])
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
        stamp(task, status, now)
        winner = insert_once(task, session.tasks.filter(external_id=external_id))
        if winner is not None:
            return winner, False
        follow_task(session, task, now)
        session.refresh_counts()
        session.updated_at = now
        session.save()
        record_task(task, ts=ts, owner_id=session.owner_id)
        record_session(session, ts=ts)
    return task, True


def update_task(task_id: int, *, check: Check | None = None, **report: Any) -> Task:
    """Apply a worker's report: `report` as for Reports.report (status,
    progress, message, details, result, error, name, stale_after, ts); one
    progress.update when it carries progress, message or details, a
    task.update when anything else changed. `check`: as for lock_task."""
    with service_write(), Reports.of_task(task_id, check) as reports:
        return reports.report(task_id, **report)


def fail_lost(task_id: int, last_report: Callable[[Task], datetime], default: int) -> bool:
    """Fail a running task whose worker has not reported for its stale_after.
    Checked again under the task's lock, so of several processes one does it."""
    with service_write():
        session, task = lock_task(task_id)
        limit = task.stale_after or default
        # A paused task waits for a person, not for its worker (which may
        # only be asking whether to go on).
        if task.status != Status.RUNNING or task.pause_requested or not limit:
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


def _cancel(task: Task, action: dict) -> bool:
    """Cancel one locked task in place; False when there is nothing to do.
    A paused task is let go on too: its worker must run to stop."""
    if task.is_terminal or task.cancel_requested:
        return False
    now = timezone.now()
    if task.status == Status.RUNNING:
        task.cancel_requested = True
    else:
        task.status = Status.CANCELLED
        stamp(task, Status.CANCELLED, now)
    task.pause_requested = False
    task.updated_at = now
    task.save()
    record_task(task, action=action)
    return True


def cancel_task(task_id: int, *, by: str | None = None) -> tuple[Task, bool]:
    """A pending task is cancelled at once; a running one is asked to stop
    (`cancel_requested`); an ended one is left as it is (changed=False).
    `by`: the acting user's username (None: the system), in the event's data."""
    with service_write():
        session, task = lock_task(task_id)
        changed = _cancel(task, acted("cancel", by))
        if changed and session.refresh_counts():
            session.save()
            record_session(session)
    return task, changed


def pause_task(task_id: int, *, by: str | None = None) -> tuple[Task, bool]:
    """Ask the task's worker to hold (`pause_requested`); the worker sees it in
    every answer about the task. A task that has ended, or is being
    cancelled, cannot be paused (409); one paused already is left as it is
    (changed=False)."""
    with service_write():
        _, task = lock_task(task_id)
        if task.is_terminal or task.cancel_requested:
            state = "being cancelled" if not task.is_terminal else task.status
            raise Refused(
                f"only a task that has not ended can be paused; this one is {state}",
                field="status",
                code="conflict",
            )
        changed = _ask_pause(task, True, acted("pause", by))
    return task, changed


def resume_task(task_id: int, *, by: str | None = None) -> tuple[Task, bool]:
    """Let a paused task's worker go on; changed=False when it was not paused
    (an ended task never is: its end clears the request)."""
    with service_write():
        _, task = lock_task(task_id)
        changed = _ask_pause(task, False, acted("resume", by))
    return task, changed


def _ask_pause(task: Task, pause: bool, action: dict) -> bool:
    if task.pause_requested == pause:
        return False
    task.pause_requested = pause
    task.updated_at = timezone.now()
    task.save(update_fields=["pause_requested", "updated_at"])
    record_task(task, action=action)
    return True


def retry_task(task_id: int, *, by: str | None = None) -> Task:
    """Start a new attempt of an ended task: back to pending, progress 0.
    `by`: the acting user's username (None: the system), in the event's data."""
    with service_write():
        session, task = lock_task(task_id)
        if not task.is_terminal:
            raise Refused(
                f"only an ended task can be retried; this one is {task.status}", field="status"
            )
        now = timezone.now()
        task.attempt += 1
        task.status = Status.PENDING
        task.progress = 0.0
        task.message = ""
        task.error = ""
        task.result = None
        task.cancel_requested = task.pause_requested = task.lost = False
        task.started_at = task.finished_at = None
        task.updated_at = now
        task.save()
        if session.refresh_counts():
            session.save()
            record_session(session)
        record_task(task, action=acted("retry", by))
    return task

"""Row locks for a change of a task, and inserts that meet a twin."""

from collections.abc import Callable

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet

from live.errors import Refused
from sessions_app.models import Session, Task

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
        raise Refused("no such task", code="not_found")
    session = found[0]
    if check is not None:
        check(session)
    found = list(Task.objects.raw(f"SELECT * FROM {tasks} WHERE id = %s" + lock, [task_id]))
    if not found:  # deleted with its session, which we now hold: cannot happen
        raise Refused("no such task", code="not_found")
    return session, found[0]


def insert_once(obj: Session | Task, same: QuerySet) -> Session | Task | None:
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

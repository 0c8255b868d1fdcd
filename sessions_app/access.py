"""Who may see and steer what.

Superusers and users with the `view_session` permission (the Switchboard
viewers group) see every session; anyone else sees the sessions they
created. Acting as a person does on a session (cancel, pause, resume, retry,
answer: can_act) needs `act_on_session` (the Switchboard operators group) or
`change_session`, or owning the session. Changing it as a worker does
(status, tasks, output, logs: can_change) needs `change_session`, or owning
the session.
"""

from collections.abc import Iterable

from django.db.models import QuerySet

from live.errors import Refused
from sessions_app.models import ACT_PERMISSION, Session, Task


def sees_all(user) -> bool:
    return user.is_active and (user.is_superuser or user.has_perm("sessions_app.view_session"))


def changes_all(user) -> bool:
    return user.is_active and (user.is_superuser or user.has_perm("sessions_app.change_session"))


def acts_on_all(user) -> bool:
    return changes_all(user) or (user.is_active and user.has_perm(f"sessions_app.{ACT_PERMISSION}"))


def visible_sessions(user) -> QuerySet[Session]:
    if sees_all(user):
        return Session.objects.all()
    return Session.objects.filter(owner_id=user.pk)


def visible_tasks(user) -> QuerySet[Task]:
    if sees_all(user):
        return Task.objects.all()
    return Task.objects.filter(session__owner_id=user.pk)


def can_see(user, session: Session) -> bool:
    """Whether `session` is among visible_sessions(user), for a row in hand."""
    return sees_all(user) or session.owner_id == user.pk


def can_change(user, session: Session) -> bool:
    return changes_all(user) or (user.is_active and session.owner_id == user.pk)


def can_act(user, session: Session) -> bool:
    """Whether the user may cancel, pause, resume, retry or answer on the session."""
    return acts_on_all(user) or (user.is_active and session.owner_id == user.pk)


def may_only_look(what: str, field: str | None = None) -> Refused:
    return Refused(
        f"you may look at this {what} but not act on it: that needs the"
        f" sessions_app.{ACT_PERMISSION} permission (the Switchboard operators group)",
        code="forbidden",
        field=field,
    )


def visible_session(user, session_id: int) -> Session:
    """The session, if the user may see it; Refused (not_found) if not."""
    session = visible_sessions(user).filter(pk=session_id).first()
    if session is None:
        raise Refused(f"no session {session_id} that you can see", code="not_found")
    return session


def visible_task(user, task_id: int) -> Task:
    """The task, if the user may see it; Refused (not_found) if not."""
    task = visible_tasks(user).filter(pk=task_id).first()
    if task is None:
        raise Refused(f"no task {task_id} that you can see", code="not_found")
    return task


def changeable_task(user, task_id: int) -> Task:
    """The task, if the user may see it and act on its session (can_act);
    Refused naming `task_id` if not (not_found when it cannot see it,
    forbidden when it may only look)."""
    task = visible_tasks(user).select_related("session").filter(pk=task_id).first()
    if task is None:
        raise Refused(f"no task {task_id} that you can see", code="not_found", field="task_id")
    if not can_act(user, task.session):
        raise may_only_look("task", "task_id")
    return task


def actable_session(user, session_id: int) -> Session:
    """The session, if the user may see it and act on it (cancel it)."""
    session = visible_session(user, session_id)
    if not can_act(user, session):
        raise may_only_look("session")
    return session


def refuse_foreign_tasks(known: set[int], named: Iterable[tuple[str, int | None]]) -> None:
    """Refuse the first item naming a task that is not one of the session's
    (`known`: the ids of its tasks among those named), by the item's field."""
    for field, task_id in named:
        if task_id is not None and task_id not in known:
            raise Refused("no such task in this session", field=field)

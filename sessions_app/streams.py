"""The sessions-and-tasks channels, plugged into the core's streams at start-up.

sessions and tasks are shared channels (each subscriber gets the events of
the sessions it may see); session:<id> and task:<id> are one session's or one
task's. Who may see what is sessions_app.access, for these channels and for
those of other features that belong to a session (logs:<session_id>).
"""

from django.db.models import Count

from live import frames
from live.streams import ChannelError, ChannelRef, Stream, register
from sessions_app import access
from sessions_app.models import Session
from sessions_app.output import latest_steps, task_output

SESSIONS_SNAPSHOT_SIZE = 100


class OwnedStream(Stream):
    """A stream whose events belong to a session: its owner and those who see all read them."""

    def reads_all(self, user) -> bool:
        return access.sees_all(user)


def visible_session_ids(user, ids: set[int]) -> set[int]:
    return set(access.visible_sessions(user).filter(pk__in=ids).values_list("pk", flat=True))


def visible_session(user, ref: ChannelRef) -> Session:
    session = access.visible_sessions(user).filter(pk=ref.id).first()
    if session is None:
        raise ChannelError("invalid_channel", f"no session {ref.id} that you can see")
    return session


def listing(name: str, visible) -> dict:
    """The newest items of a shared channel (as many as fit in a frame), with
    counts by status; `truncated` when fewer than the newest 100 fit."""
    counts = dict(visible.order_by().values_list("status").annotate(n=Count("id")))
    newest = (item.as_json() for item in visible.order_by("-id")[:SESSIONS_SNAPSHOT_SIZE])
    items, truncated = frames.fit(newest)
    answer = {name: items, "counts": counts, "total": sum(counts.values())}
    if truncated:
        answer["truncated"] = True
    return answer


class SessionsStream(OwnedStream):
    kind = pattern = "sessions"
    shared_key = "id"
    wide = True

    def snapshot(self, user, ref, obj, narrowing) -> dict:
        return listing("sessions", access.visible_sessions(user))


class TasksStream(OwnedStream):
    kind = pattern = "tasks"
    shared_key = "session_id"
    wide = True

    def snapshot(self, user, ref, obj, narrowing) -> dict:
        return listing("tasks", access.visible_tasks(user))


class SessionStream(OwnedStream):
    kind, pattern, has_id = "session", "session:<id>", True

    def check_access(self, user, ref) -> Session:
        return visible_session(user, ref)

    def visible_ids(self, user, ids: set[int]) -> set[int]:
        return visible_session_ids(user, ids)

    def snapshot(self, user, ref, obj, narrowing) -> dict:
        tasks, truncated = frames.fit(t.as_json() for t in obj.tasks.order_by("id").iterator())
        answer = {"session": obj.as_json(), "tasks": tasks, "latest_steps": latest_steps(obj)}
        if truncated:
            # The rest: GET /api/v1/tasks?session=<id>.
            answer["tasks_truncated"] = True
        return answer


class TaskStream(OwnedStream):
    kind, pattern, has_id = "task", "task:<id>", True
    # Output chunks may be large (up to 1 MiB each): read fewer at a time.
    backlog_page = 20

    def check_access(self, user, ref):
        task = access.visible_tasks(user).filter(pk=ref.id).first()
        if task is None:
            raise ChannelError("invalid_channel", f"no task {ref.id} that you can see")
        return task

    def visible_ids(self, user, ids: set[int]) -> set[int]:
        return set(access.visible_tasks(user).filter(pk__in=ids).values_list("pk", flat=True))

    def snapshot(self, user, ref, obj, narrowing) -> dict:
        return {"task": obj.as_json(), "output": task_output(obj)}


def register_streams() -> None:
    """Plug these channels into the core (called by the app config)."""
    for stream in (SessionsStream(), TasksStream(), SessionStream(), TaskStream()):
        register(stream)

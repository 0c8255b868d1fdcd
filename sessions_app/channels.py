"""The names of the sessions-and-tasks channels: built here and nowhere else."""

SESSIONS = "sessions"
TASKS = "tasks"


def session(session_id: int) -> str:
    return f"session:{session_id}"


def task(task_id: int) -> str:
    return f"task:{task_id}"


def of_session(session_id: int) -> list[str]:
    """The channels a session.update is on."""
    return [SESSIONS, session(session_id)]


def of_task(task_id: int, session_id: int) -> list[str]:
    """The channels a task.update or progress.update is on."""
    return [session(session_id), task(task_id), TASKS]


def primary(event) -> str:
    """The narrowest of an event's channels (registered with the core)."""
    return task(event.task_id) if event.task_id is not None else session(event.session_id)

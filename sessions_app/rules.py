"""The rules of sessions and tasks, each in one place: which statuses there
are, the progress range, and that an ended session or task does not start
again. The services ask these, so every write (the API, the socket, the
admin, the signals and the replay of event files) meets the same rule and
the same message.
"""

import math
import re
from typing import Any

from live.errors import Refused
from sessions_app.models import TERMINAL, Status

# Progress is a percentage.
PROGRESS_MIN, PROGRESS_MAX = 0, 100
# A status step's name (thinking, tool_call, ...).
STEP_PATTERN = r"^[a-z_]{1,32}$"
STEP_RE = re.compile(STEP_PATTERN)


def check_status(value: str, allowed: list[str], field: str = "status") -> Status:
    if value not in allowed:
        raise Refused(f"must be one of: {', '.join(allowed)}", field=field)
    return Status(value)


def check_progress(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused("must be a number from 0 to 100", field="progress")
    value = float(value)
    if not math.isfinite(value) or value < PROGRESS_MIN or value > PROGRESS_MAX:
        raise Refused("must be a number from 0 to 100", field="progress")
    return value


def transition_problem(current: str | None, new: str, what: str) -> str | None:
    """Why `current` cannot become `new` (an ended one does not start again), or None."""
    if current in TERMINAL and new not in TERMINAL:
        hint = "; retry the task for a new attempt" if what == "task" else ""
        return f"a {current} {what} cannot become {new}{hint}"
    return None


def check_transition(current: str, new: Status, what: str) -> None:
    problem = transition_problem(current, new.value, what)
    if problem:
        raise Refused(problem, field="status")

"""The rules of sessions and tasks, each in one place: which statuses there
are, the progress range, and that an ended session or task does not start
again. The services ask these, so every write (the API, the socket, the
admin, the signals and the replay of event files) meets the same rule and
the same message.
"""

import math
from typing import Any

from live.errors import Refused
from sessions_app.models import TERMINAL, Status


def check_status(value: str, allowed: list[str], field: str = "status") -> Status:
    if value not in allowed:
        raise Refused(f"must be one of: {', '.join(allowed)}", field=field)
    return Status(value)


def check_progress(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused("must be a number from 0 to 100", field="progress")
    value = float(value)
    if not math.isfinite(value) or value < 0 or value > 100:
        raise Refused("must be a number from 0 to 100", field="progress")
    return value


def check_transition(current: str, new: Status, what: str) -> None:
    if current in TERMINAL and new not in TERMINAL:
        hint = "; retry the task for a new attempt" if what == "task" else ""
        raise Refused(f"a {current} {what} cannot become {new.value}{hint}", field="status")

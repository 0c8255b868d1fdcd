"""`switchboard run --retryable`: after its command ends, `run` stays and waits
for someone to retry the task (`POST /api/v1/tasks/<id>/retry`, the page's
Retry button), then runs the command again as the next attempt.

The wait asks the server about the task every second (`GET /tasks/<id>`): a
retry shows as an `attempt` greater than the one that ran, `pending`; it is
seen within about a second. A server that is away is asked again with
the pauses of the client's other calls (switchboard_client.retry.Backoff:
0.25 s, doubling, at most 8 s), and the wait goes on meanwhile. It ends without a retry on Ctrl-C,
SIGTERM or SIGHUP, when the task is cancelled (a retry cancelled before it
started), when the task or the token is gone (404, 401, 403), or after
`--retry-for` seconds when that was given.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time

from switchboard_client import Client, SwitchboardError
from switchboard_client.retry import Backoff, transient

POLL = 1.0  # seconds between questions while the server answers
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """A stop signal arrived while waiting. Not an Exception, so that no
    `except Exception` on the way (in a request) takes it for a failure."""


class RetryWait:
    """Waits for the next attempt of one task after `attempt` has ended."""

    def __init__(self, client: Client, task_id, retry_for: float | None = None) -> None:
        self.client = client
        self.task_id = task_id
        self.retry_for = retry_for  # None: wait until stopped
        self.why = ""  # why the last wait ended without a retry

    def wait(self, attempt: int, told: str = "") -> dict | None:
        """The task once it has been retried past `attempt`, or None (see `why`).
        `told` is printed once a stop signal is taken as one (so a signal
        sent when it is read does not find the default action)."""
        main = threading.current_thread() is threading.main_thread()
        before = {}

        def stop(signum, frame):
            raise Stopped()

        try:
            if main:
                for signum in STOP_SIGNALS:
                    before[signum] = signal.signal(signum, stop)
            if told:
                note(told)
            return self._poll(attempt)
        except Stopped:
            self.why = "stopped by a signal"
            return None
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)

    def _poll(self, attempt: int) -> dict | None:
        end = None if self.retry_for is None else time.monotonic() + self.retry_for
        away: Backoff | None = None  # the pauses while the server is away
        while True:
            try:
                task = self.client.get_task(self.task_id, retry_for=0)
            except SwitchboardError as error:
                if not transient(error.status):
                    self.why = ending(error)
                    return None
                if away is None:
                    note(f"the server is away ({error.message}); still waiting for a retry")
                    away = Backoff(math.inf)  # the wait's own end is kept below
                wait = away.pause(None)
            else:
                if away is not None:
                    note("the server is back; still waiting")
                    away = None
                found = self.retried(task, attempt)
                if found is not None:
                    return found
                if self.why:
                    return None
                wait = POLL
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    self.why = f"no retry within {self.retry_for:g} s"
                    return None
                wait = min(wait, left)
            time.sleep(wait)

    def retried(self, task: dict, attempt: int) -> dict | None:
        """The task if it is a new attempt to run; sets `why` if the wait is over."""
        if task.get("cancel_requested") or (
            task.get("attempt", 1) > attempt and task.get("status") == "cancelled"
        ):
            self.why = "the task was cancelled"
            return None
        if task.get("attempt", 1) > attempt and task.get("status") == "pending":
            return task
        return None


def ending(error: SwitchboardError) -> str:
    if error.status == 404:
        return "the task is gone (404)"
    if error.status in (401, 403):
        return f"the token was refused ({error.status})"
    return f"the server refused to say ({error})"


def note(text: str) -> None:
    print(f"switchboard run: {text}", file=sys.stderr, flush=True)

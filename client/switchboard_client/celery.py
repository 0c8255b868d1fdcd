"""Every task a Celery worker runs, live in Switchboard, from Celery's signals.

    # in the module the worker loads (-A), nothing where tasks are sent:
    from switchboard_client.celery import connect
    connect(app)  # SWITCHBOARD_URL, SWITCHBOARD_TOKEN, or url=, token=

A task run is a Switchboard task whose `external_id` is the Celery task id,
in the session of its canvas (`external_id` the group's id for a group or a
chord, else `request.root_id`; named after the task that made it): a chain,
group or chord is one session, a lone task one of its own (ended with it). `session=` chooses
otherwise: a callable taking the `Run` and giving an external id, or an
(external id, name) pair (see `per_worker`, `per_day`).

The task is `pending` when the worker receives it, `running` when it starts
(with `stale_after`, kept alive every third of it while it runs, so a worker
killed mid-task leaves it to be failed as lost), `completed` with its result
(JSON as it is, else its repr cut at 1,000 characters), `failed` with
`ExceptionType: message` (the traceback as one ERROR line of the session's
log), `cancelled` when revoked. A Celery retry fails the attempt with the
reason and makes the task's next attempt (`POST /tasks/<id>/retry`), which
the next run starts. What the task logs (its task logger and the root
logger, while it runs) is sent with the task's id.

Nothing here waits for the server: the signals put what happened on a queue,
and one thread per worker process sends it (`Reporter`: coalesced, retried,
bounded). The same thread looks every `poll` seconds at the tasks of this
process: one cancelled before it started (Cancel pressed on a pending task)
is revoked (`app.control.revoke`), and a running one asked to stop makes
`cancel_requested()` true inside it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import traceback
from collections.abc import Callable
from datetime import date
from typing import Any

from celery import signals

from switchboard_client import _entry
from switchboard_client.celery_calls import call_of, check_record_arguments, resent_id
from switchboard_client.celery_connector import Connector, Run

__all__ = ["connect", "progress", "cancel_requested", "Run", "per_worker", "per_day"]

logger = logging.getLogger("switchboard_client.celery")
RESULT_REPR = 1000
QUIET = ("celery.app.trace", "celery.worker", "switchboard_client", "urllib3", "kombu")


def per_worker(run: Run) -> tuple[str, str]:
    return f"celery:{run.hostname}", f"worker {run.hostname}"


def per_day(run: Run) -> tuple[str, str]:
    today = date.today().isoformat()
    return f"celery:{today}", f"celery {today}"


_settings: dict[str, Any] = {}
_recording: dict[str, Any] = {"arguments": True}
_current = threading.local()  # the Celery task id running in this thread
_connector: Connector | None = None
_connector_lock = threading.Lock()


def connect(
    app,
    url: str | None = None,
    token: str | None = None,
    *,
    session: Callable[[Run], str | tuple[str, str]] | None = None,
    stale_after: int = 60,
    poll: float = 1.0,
    record_arguments: bool | str = True,
) -> None:
    """Report every task `app`'s workers run. `record_arguments`: what of a
    run's arguments is kept for Retry to send it again (True: args and
    kwargs; "args": the positional ones only; False: none, and Retry cannot
    send it); see `switchboard_client.celery_calls`."""
    url = url or os.environ.get("SWITCHBOARD_URL")
    token = token or os.environ.get("SWITCHBOARD_TOKEN")
    if not url or not token:
        raise ValueError("connect(app) needs url= and token= or SWITCHBOARD_URL/SWITCHBOARD_TOKEN")
    _recording["arguments"] = check_record_arguments(record_arguments)
    _settings.update(
        app=app, url=url, token=token, session=session, stale_after=stale_after, poll=poll
    )
    for signal, handler in (
        (signals.task_received, _received),
        (signals.task_prerun, _prerun),
        (signals.task_postrun, _postrun),
        (signals.task_success, _success),
        (signals.task_failure, _failure),
        (signals.task_retry, _retry),
        (signals.task_revoked, _revoked),
        (signals.worker_process_init, _process_init),
        (signals.worker_shutdown, _shutdown),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"switchboard.{handler.__name__}")


def progress(percent: float, message: str | None = None) -> None:
    """Report the running task's progress (0–100); nothing outside a task."""
    task_id = getattr(_current, "task_id", None)
    if task_id is not None:
        _queue_up("progress", task_id, percent=float(percent), message=message)


def cancel_requested() -> bool:
    """Whether someone pressed Cancel on the running task."""
    task_id = getattr(_current, "task_id", None)
    connector = _connector
    return bool(task_id and connector and task_id in connector.cancelled)


# --- the signals: each puts what happened on the queue, nothing more ---------


def _run_of(task_id: str, name: str, request, hostname: str | None) -> Run:
    """The run, keyed by its canvas: Celery gives a group or chord sent from
    outside a task no common root (each of its tasks is its own root, and a
    chord's body has the last header task's), but every task of one carries
    the group's id. So the group's id when there is one, else the root's."""
    group = getattr(request, "group", None)
    return Run(task_id, name, group or getattr(request, "root_id", None) or task_id, hostname or "")


def _lone(run: Run, request) -> bool:
    follows = ("callbacks", "errbacks", "chain", "chord", "group")
    return run.root_id == run.id and not any(getattr(request, k, None) for k in follows)


def _received(sender=None, request=None, **_) -> None:
    run = _run_of(request.id, request.name, request, request.hostname)
    _queue_up("received", run.id, run=run, lone=_lone(run, request), resent=resent_id(request))


def _prerun(sender=None, task_id=None, task=None, args=None, kwargs=None, **_) -> None:
    _current.task_id = task_id
    _handler.install()
    req = task.request
    run = _run_of(task_id, task.name, req, req.hostname)
    call = call_of(task, args, kwargs, _recording["arguments"])
    _queue_up("start", task_id, run=run, lone=_lone(run, req), call=call, resent=resent_id(req))


def _postrun(sender=None, task_id=None, **_) -> None:
    _current.task_id = None


def _success(sender=None, result=None, **_) -> None:
    _queue_up("end", sender.request.id, status="completed", result=_result(result))


def _failure(sender=None, task_id=None, exception=None, einfo=None, **_) -> None:
    text = str(einfo.traceback) if einfo is not None else traceback.format_exc()
    error = f"{type(exception).__name__}: {exception}"
    _queue_up("end", task_id, status="failed", error=error, traceback=text)


def _retry(sender=None, request=None, reason=None, **_) -> None:
    _queue_up("retry", request.id, error=f"retry: {reason}")


def _revoked(sender=None, request=None, terminated=False, expired=False, **_) -> None:
    why = "expired" if expired else "terminated" if terminated else "revoked"
    # `request` is the task's Context here, `sender` the task.
    name = getattr(sender, "name", None) or getattr(request, "task", None) or "celery task"
    run = _run_of(request.id, name, request, request.hostname)
    lone = _lone(run, request)
    _queue_up("end", run.id, status="cancelled", error=f"{why} in Celery", run=run, lone=lone)


def _process_init(**_) -> None:
    _get()  # the forked child's own thread


def _shutdown(**_) -> None:
    connector = _connector
    if connector is not None and connector.pid == os.getpid():
        connector.close()


def _result(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)[:RESULT_REPR]


def _queue_up(kind: str, task_id: str, **fields) -> None:
    connector = _get()
    if connector is not None:
        connector.put((kind, str(task_id), fields))


def _get() -> Connector | None:
    """This process's connector (a new one after a fork)."""
    global _connector
    if not _settings:
        return None
    with _connector_lock:
        if _connector is None or _connector.pid != os.getpid():
            _connector = Connector(**_settings)
        return _connector


class _TaskLogs(logging.Handler):
    """Records of the task running in this thread, to its session's log."""

    installed = False

    def install(self) -> None:
        if not self.installed or self not in logging.getLogger().handlers:
            # After Celery set up its logging (which clears the root's handlers).
            logging.getLogger().addHandler(self)
            logging.getLogger("celery.task").addHandler(self)
            self.installed = True

    def emit(self, record: logging.LogRecord) -> None:
        task_id = getattr(_current, "task_id", None)
        if task_id is None or getattr(record, "_switchboard", False):
            return
        if record.name.startswith(QUIET):
            return
        record._switchboard = True  # seen once, on whichever logger
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            entry = _entry(record, message, None)
            entry.pop("uid", None)
            _queue_up("log", task_id, entry=entry)
        except Exception:
            self.handleError(record)


_handler = _TaskLogs()

"""Every task a Celery worker runs, live in Switchboard, from Celery's signals.

    # in the module the worker loads (-A), nothing where tasks are sent:
    from switchboard_client.celery import connect
    connect(app)  # SWITCHBOARD_URL, SWITCHBOARD_TOKEN, or url=, token=

A task run is a Switchboard task whose `external_id` is the Celery task id,
in the session of its canvas's root (`request.root_id` as the session's
`external_id`, the root task's name as its name): a chain, group or chord is
one session, a lone task one of its own (ended with it). `session=` chooses
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
import queue
import threading
import time
import traceback
from collections.abc import Callable
from datetime import date
from typing import Any, NamedTuple

from celery import signals

from switchboard_client import Client, Reporter, SwitchboardError, _entry

__all__ = ["connect", "progress", "cancel_requested", "Run", "per_worker", "per_day"]

logger = logging.getLogger("switchboard_client.celery")
RESULT_REPR = 1000
QUIET = ("celery.app.trace", "celery.worker", "switchboard_client", "urllib3", "kombu")


class Run(NamedTuple):
    """What a `session=` callable is told about a task run."""

    id: str
    name: str
    root_id: str
    hostname: str


def per_worker(run: Run) -> tuple[str, str]:
    return f"celery:{run.hostname}", f"worker {run.hostname}"


def per_day(run: Run) -> tuple[str, str]:
    today = date.today().isoformat()
    return f"celery:{today}", f"celery {today}"


_settings: dict[str, Any] = {}
_current = threading.local()  # the Celery task id running in this thread
_connector: _Connector | None = None
_connector_lock = threading.Lock()


def connect(
    app,
    url: str | None = None,
    token: str | None = None,
    *,
    session: Callable[[Run], str | tuple[str, str]] | None = None,
    stale_after: int = 60,
    poll: float = 1.0,
) -> None:
    """Report every task `app`'s workers run."""
    url = url or os.environ.get("SWITCHBOARD_URL")
    token = token or os.environ.get("SWITCHBOARD_TOKEN")
    if not url or not token:
        raise ValueError("connect(app) needs url= and token= or SWITCHBOARD_URL/SWITCHBOARD_TOKEN")
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


def _run_of(task_id: str, name: str, root_id: str | None, hostname: str | None) -> Run:
    return Run(task_id, name, root_id or task_id, hostname or "")


def _lone(run: Run, request) -> bool:
    follows = ("callbacks", "errbacks", "chain", "chord", "group")
    return run.root_id == run.id and not any(getattr(request, k, None) for k in follows)


def _received(sender=None, request=None, **_) -> None:
    run = _run_of(request.id, request.name, request.root_id, request.hostname)
    _queue_up("received", run.id, run=run, lone=_lone(run, request))


def _prerun(sender=None, task_id=None, task=None, **_) -> None:
    _current.task_id = task_id
    _handler.install()
    req = task.request
    run = _run_of(task_id, task.name, req.root_id, req.hostname)
    _queue_up("start", task_id, run=run, lone=_lone(run, req))


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
    run = _run_of(request.id, name, getattr(request, "root_id", None), request.hostname)
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


def _get() -> _Connector | None:
    """This process's connector (a new one after a fork)."""
    global _connector
    if not _settings:
        return None
    with _connector_lock:
        if _connector is None or _connector.pid != os.getpid():
            _connector = _Connector(**_settings)
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


class _Connector:
    """One process's thread, sending what the signals queued."""

    MOST = 100_000  # events held while the server is away

    def __init__(self, app, url, token, session, stale_after, poll) -> None:
        self.pid = os.getpid()
        self.app = app
        self.client = Client(url, token, timeout=10, retry_for=30)
        self.quick = Client(url, token, timeout=5, retry_for=0)
        self.choose = session
        self.stale_after = stale_after
        self.poll = poll
        self.events: queue.Queue = queue.Queue(self.MOST)
        self.dropped = 0
        self.sessions: dict[str, str] = {}  # session external id: id
        self.tasks: dict[str, tuple[str, str]] = {}  # Celery id: (session id, task id)
        self.waiting: set[str] = set()  # received, not started
        self.running: dict[str, float] = {}  # Celery id: when last kept alive
        self.lone: set[str] = set()
        self.cancelled: set[str] = set()
        self.revoked: set[str] = set()
        self.reporters: dict[str, Reporter] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="switchboard-celery", daemon=True)
        self._thread.start()

    def put(self, event) -> None:
        try:
            self.events.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        for reporter in list(self.reporters.values()):
            reporter.close(timeout=2)

    def _work(self) -> None:
        looked = 0.0
        while True:
            try:
                kind, task_id, fields = self.events.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return
                kind = None
            if kind is not None:
                try:
                    getattr(self, f"_{kind}")(task_id, **fields)
                except SwitchboardError as error:
                    logger.warning(
                        "switchboard: %s of Celery task %s not sent: %s", kind, task_id, error
                    )
                except Exception:
                    logger.exception("switchboard: %s of Celery task %s", kind, task_id)
            if time.monotonic() - looked >= self.poll:
                looked = time.monotonic()
                try:
                    self._look()
                except Exception as error:  # the next look may fare better
                    logger.debug("switchboard: look failed: %s", error)

    # What the signals said.

    def _ensure(self, run: Run, lone: bool) -> tuple[str, str]:
        known = self.tasks.get(run.id)
        if known:
            return known
        if self.choose is None:
            key, name = run.root_id, run.name
        else:
            chosen = self.choose(run)
            key, name = chosen if isinstance(chosen, tuple) else (chosen, chosen)
            lone = False
        if lone:
            self.lone.add(run.id)
        session_id = self.sessions.get(key)
        if session_id is None:
            session = self.client.create_session(name, external_id=key, status="running")
            session_id = self.sessions[key] = session["id"]
            if self.choose is None and run.root_id == run.id and session["name"] != name:
                self.client.update_session(session_id, name=name)  # made first by another member
        task = self.client.create_task(
            session_id, run.name, external_id=run.id, stale_after=self.stale_after
        )
        self.tasks[run.id] = (session_id, task["id"])
        return session_id, task["id"]

    def _reporter(self, session_id: str) -> Reporter:
        if session_id not in self.reporters:
            self.reporters[session_id] = Reporter(self.client, session_id)
        return self.reporters[session_id]

    def _received(self, task_id: str, run: Run, lone: bool) -> None:
        self._ensure(run, lone)
        self.waiting.add(task_id)

    def _start(self, task_id: str, run: Run, lone: bool) -> None:
        session_id, sb_id = self._ensure(run, lone)
        self.waiting.discard(task_id)
        task = self.client.get_task(sb_id)
        if task["status"] == "cancelled":
            self.cancelled.add(task_id)  # pressed after the last look: it should stop
            return
        if task["status"] in ("completed", "failed"):  # run again (a redelivery)
            self.client.request("POST", f"tasks/{sb_id}/retry", {})
        reporter = self._reporter(session_id)
        reporter.report(sb_id, status="running", stale_after=self.stale_after)
        # Sent now, so that a quick task's end is not coalesced with it.
        reporter.flush(timeout=2)
        self.running[task_id] = time.monotonic()

    def _progress(self, task_id: str, percent: float, message: str | None) -> None:
        if task_id in self.tasks:
            session_id, sb_id = self.tasks[task_id]
            self._reporter(session_id).progress(sb_id, percent, message)

    def _log(self, task_id: str, entry: dict) -> None:
        if task_id in self.tasks:
            session_id, sb_id = self.tasks[task_id]
            self._reporter(session_id).entry({**entry, "task_id": sb_id})

    def _end(
        self,
        task_id: str,
        status: str,
        traceback: str | None = None,
        run: Run | None = None,
        lone: bool = False,
        **fields,
    ) -> None:
        self.waiting.discard(task_id)
        self.running.pop(task_id, None)
        if run is not None:  # revoked: perhaps before it was received
            self._ensure(run, lone)
        if task_id not in self.tasks:
            return
        session_id, sb_id = self.tasks[task_id]
        reporter = self._reporter(session_id)
        if traceback:
            reporter.entry(
                {"level": "ERROR", "logger": "celery", "task_id": sb_id, "message": traceback}
            )
        if task_id in self.cancelled and status == "completed":
            status, fields = "cancelled", {}  # it stopped when asked
        if task_id not in self.revoked:  # else cancelled on the server already
            reporter.report(sb_id, status=status, **fields)
        if task_id in self.lone:
            reporter.flush()
            try:
                self.client.update_session(session_id, status=status, retry_for=5)
            except SwitchboardError:
                pass  # ended already
        self._forget(task_id)

    def _retry(self, task_id: str, error: str) -> None:
        self.running.pop(task_id, None)
        if task_id not in self.tasks:
            return
        session_id, sb_id = self.tasks[task_id]
        reporter = self._reporter(session_id)
        reporter.entry({"level": "WARNING", "logger": "celery", "task_id": sb_id, "message": error})
        reporter.report(sb_id, status="failed", error=error[:1000])
        reporter.flush()
        self.client.request("POST", f"tasks/{sb_id}/retry", {})

    def _forget(self, task_id: str) -> None:
        session_id, _ = self.tasks.pop(task_id)
        self.lone.discard(task_id)
        self.cancelled.discard(task_id)
        self.revoked.discard(task_id)
        if not any(s == session_id for s, _ in self.tasks.values()):
            reporter = self.reporters.pop(session_id, None)
            if reporter is not None:
                reporter.close()

    # Looking at the server.

    def _look(self) -> None:
        """Cancel pressed: revoke what has not started, tell what runs; keep
        running tasks alive every third of their stale_after."""
        now = time.monotonic()
        for task_id, kept in list(self.running.items()):
            if now - kept >= self.stale_after / 3 and task_id in self.tasks:
                session_id, sb_id = self.tasks[task_id]
                self._reporter(session_id).report(sb_id, stale_after=self.stale_after)
                self.running[task_id] = now
        watched = self.waiting | set(self.running)
        sessions = {self.tasks[t][0] for t in watched if t in self.tasks}
        for session_id in sessions:
            found = self.quick.request(
                "GET", "tasks", params={"session": session_id, "limit": 1000}
            )["results"]
            by_id = {task["id"]: task for task in found}
            for task_id in watched:
                known = self.tasks.get(task_id)
                task = by_id.get(known[1]) if known and known[0] == session_id else None
                if task is None:
                    continue
                if task_id in self.waiting and task["status"] == "cancelled":
                    if task_id not in self.revoked:
                        self.revoked.add(task_id)
                        self.app.control.revoke(task_id)
                elif task_id in self.waiting and task["status"] != "pending":
                    # Started (in a pool's child process, which reports it): no longer ours.
                    self.waiting.discard(task_id)
                    if task_id not in self.running:
                        self._forget(task_id)
                elif task_id in self.running and task["cancel_requested"]:
                    self.cancelled.add(task_id)

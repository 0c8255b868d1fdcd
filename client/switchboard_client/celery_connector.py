"""The sending side of `switchboard_client.celery`: one thread per worker
process takes what the signals queued and sends it (`Reporter`: coalesced,
retried, bounded), and looks every `poll` seconds at the tasks of this
process (Cancel pressed: revoke what has not started, tell what runs).

A run sent again by the server (Retry pressed) carries the Switchboard task's
id in the `switchboard_task_id` header and the same Celery task id as the run
it repeats, as Celery's own `Task.retry` does: it becomes that task's next
attempt, whatever session the `session=` choice would give it today.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import NamedTuple

from switchboard_client import Client, Reporter, SwitchboardError

logger = logging.getLogger("switchboard_client.celery")


class Run(NamedTuple):
    """What a `session=` callable is told about a task run."""

    id: str
    name: str
    root_id: str
    hostname: str


class Connector:
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

    def _ensure(self, run: Run, lone: bool, resent: str | None = None) -> tuple[str, str]:
        known = self.tasks.get(run.id) or (resent and self._resent(run, lone, resent))
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

    def _resent(self, run: Run, lone: bool, sb_id: str) -> tuple[str, str] | None:
        """The task a run sent again by the server repeats (its header), when
        it is still there and is this run's (the same Celery id)."""
        try:
            task = self.client.get_task(sb_id)
        except SwitchboardError as error:
            if error.status != 404:
                raise
            return None
        if task["external_id"] != run.id:
            return None
        if lone and self.choose is None:
            self.lone.add(run.id)
        self.tasks[run.id] = (task["session_id"], task["id"])
        return self.tasks[run.id]

    def _again(self, sb_id: str) -> None:
        """A new attempt for a run Celery itself repeats (a retry, a
        redelivery): recorded only, as the worker runs it anyway."""
        try:
            self.client.request("POST", f"tasks/{sb_id}/retry", {"send": False})
        except SwitchboardError as error:
            if error.status != 400:
                raise
            self.client.request("POST", f"tasks/{sb_id}/retry", {})  # a server without `send`

    def _reporter(self, session_id: str) -> Reporter:
        if session_id not in self.reporters:
            self.reporters[session_id] = Reporter(self.client, session_id)
        return self.reporters[session_id]

    def _received(self, task_id: str, run: Run, lone: bool, resent: str | None) -> None:
        self._ensure(run, lone, resent)
        self.waiting.add(task_id)

    def _start(self, task_id: str, run: Run, lone: bool, call: dict, resent: str | None) -> None:
        session_id, sb_id = self._ensure(run, lone, resent)
        self.waiting.discard(task_id)
        task = self.client.get_task(sb_id)
        if task["status"] == "cancelled":
            self.cancelled.add(task_id)  # pressed after the last look: it should stop
            return
        if task["status"] in ("completed", "failed"):  # run again (a redelivery)
            self._again(sb_id)
        reporter = self._reporter(session_id)
        details = {**(task.get("details") or {}), "celery": call}
        reporter.report(sb_id, status="running", stale_after=self.stale_after, details=details)
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
        self._again(sb_id)

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

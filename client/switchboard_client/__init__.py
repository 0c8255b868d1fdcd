"""Switchboard client for workers: the standard library only.

    from switchboard_client import Client, LogHandler

    sb = Client("http://localhost:8000", token)
    with sb.session("nightly import", external_id="import-2026-11-21") as session:
        logging.getLogger().addHandler(LogHandler("http://localhost:8000", token, session["id"]))
        task = sb.create_task(session["id"], "load customers")
        sb.update_task(task["id"], status="running")
        sb.progress(task["id"], 42.5, message="42,500 of 100,000 rows")

Each call rides through a server restart: it tries again for `retry_for`
seconds (60) while the server is away, and a retry writes nothing twice where
the server offers a key for it (see Client).

LogHandler batches records in a background thread. It never blocks or
raises into the job: when the server is slow or down it keeps lines in a
bounded queue and retries with the same entry uids, so a retry stores
nothing twice; close() flushes and returns within 10 s even when the server
is down. Requests stay under a body limit, text the database cannot store
(NUL, lone surrogates) is replaced by U+FFFD, and lines the server refuses are
dropped alone and said (switchboard_client.limits).

`pip install ./client` also gives the `switchboard` command (run, tail, ls):
see switchboard_client.cli. `AsyncClient` (the same calls, awaited) needs
httpx: `pip install ./client[async]` (switchboard_client.aio); Celery workers
report with `switchboard_client.celery.connect(app)` (`./client[celery]`).
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from switchboard_client.limits import (
    MAX_TEXT,
    BodyLimit,
    encoded_size,
    fitting,
    refused_items,
    storable,
    take,
)
from switchboard_client.retry import Backoff, retry_after, transient

__all__ = ["Client", "LogHandler", "Reporter", "SwitchboardError"]
__version__ = "1.0.0"

logger = logging.getLogger("switchboard_client")


def __getattr__(name: str):
    # Imported on first use: it needs httpx, which the rest does not.
    if name == "AsyncClient":
        from switchboard_client.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SwitchboardError(Exception):
    """An HTTP error answer (status and body), or the server could not be
    reached (status 0). `tries`: how many times the call asked."""

    def __init__(
        self,
        status: int,
        message: str,
        body: Any = None,
        retry_after: float | None = None,
        tries: int = 1,
    ) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.body = body
        self.retry_after = retry_after  # seconds, from a 429's or a 503's Retry-After
        self.tries = tries


ENDED = ("completed", "failed", "cancelled")


def call_parts(
    base_url: str, path: str, body: Any, params: dict | None
) -> tuple[str, bytes | None]:
    """The URL of an API call (parameters that are None left out) and its JSON body."""
    url = f"{base_url}/api/v1/{path.lstrip('/')}"
    if params:
        query = {k: v for k, v in params.items() if v is not None}
        url += "?" + urllib.parse.urlencode(query)
    return url, None if body is None else json.dumps(body).encode()


def error_detail(raw: bytes) -> tuple[Any, str]:
    """An error answer's body (JSON, else text) and its `detail` message."""
    try:
        detail = json.loads(raw)
    except ValueError:
        detail = raw.decode(errors="replace")
    return detail, detail.get("detail", "") if isinstance(detail, dict) else str(detail)


def question_body(prompt: str, choices, default, timeout) -> dict[str, Any]:
    """What `ask` sends; its `uid` makes a retried ask one question."""
    return {
        "prompt": prompt,
        "choices": choices,
        "default": default,
        "timeout": timeout,
        "uid": uuid.uuid4().hex,
    }


def pause_after(error: SwitchboardError, backoff: Backoff, method: str, path: str) -> float:
    """How long to wait before trying a failed call again; raises when it is
    not to be tried again (not transient, or `retry_for` spent)."""
    if not transient(error.status):
        raise error
    pause = backoff.pause(error.retry_after)
    if pause is None:
        if backoff.tries == 1:
            raise error
        raise SwitchboardError(
            error.status,
            f"{error.message} (gave up after {backoff.tries} tries in {backoff.elapsed():.0f} s)",
            error.body,
            error.retry_after,
            backoff.tries,
        ) from None
    if backoff.tries == 2:
        logger.warning(
            "switchboard_client: %s; %s %s is tried again for up to %g s",
            error,
            method,
            path,
            backoff.retry_for,
        )
    return pause


class Client:
    """Calls to a Switchboard server, each of which rides through an outage.

    `retry_for`: seconds a call keeps trying while the server is away (the
    connection refused or cut, a timeout, 408, 429, 502, 503, 504), with
    growing, jittered pauses and never sooner than a Retry-After says; then
    it raises the last failure, saying how long it tried (see
    switchboard_client.retry). 60 by default; 0 asks once. Most methods take
    `retry_for=` for one call too. Other answers (a 400, 401, 403, 404...)
    raise at once.

    A retry writes nothing twice where the server offers a way: a session or
    task made without an `external_id` gets a random one, so that a second
    try answers what the first made; log entries without a `uid` get one.
    Reports (`update_task`, `progress`, `update_session`) set values, so a
    repeat changes nothing (a progress report repeated is one more
    `progress.update` event of the same values). An output chunk or a step
    has no such key: one whose answer was lost after the server stored it is
    stored again by the retry.

    `throttle_wait` is the older name of `retry_for`.
    """

    RETRY_FOR = 60.0
    WAIT = 30  # seconds one request of `ask` waits for the answer

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 10.0,
        throttle_wait: float | None = None,
        *,
        retry_for: float | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        if retry_for is None:
            retry_for = self.RETRY_FOR if throttle_wait is None else throttle_wait
        self.retry_for = float(retry_for)

    @property
    def throttle_wait(self) -> float:
        return self.retry_for

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict | None = None,
        timeout: float | None = None,
        retry_for: float | None = None,
    ) -> Any:
        url, data = call_parts(self.base_url, path, body, params)
        backoff = Backoff(self.retry_for if retry_for is None else retry_for)
        while True:
            try:
                return self._send(method, url, data, timeout)
            except SwitchboardError as error:
                time.sleep(pause_after(error, backoff, method, path))

    def _send(self, method: str, url: str, data: bytes | None, timeout: float | None) -> Any:
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            try:
                raw = error.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            detail, message = error_detail(raw)
            raise SwitchboardError(
                error.code,
                message or error.reason,
                detail,
                retry_after(error.headers.get("Retry-After")),
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            # HTTPException: an answer cut short (a server stopping mid-answer).
            reason = getattr(error, "reason", None) or error.__class__.__name__
            raise SwitchboardError(0, f"cannot reach {self.base_url}: {reason}") from None
        return json.loads(raw) if raw else None

    # Sessions
    def create_session(
        self,
        name: str,
        metadata: dict | None = None,
        external_id: str | None = None,
        *,
        status: str | None = None,
        retry_for: float | None = None,
    ) -> dict:
        """With an `external_id` used before, the session made then (the
        server's idempotent create); without one, a random one is sent."""
        body: dict[str, Any] = {"name": name, "external_id": external_id or uuid.uuid4().hex}
        if metadata is not None:
            body["metadata"] = metadata
        if status is not None:
            body["status"] = status
        return self.request("POST", "sessions", body, retry_for=retry_for)

    def get_session(self, session_id, *, retry_for: float | None = None) -> dict:
        return self.request("GET", f"sessions/{session_id}", retry_for=retry_for)

    def update_session(self, session_id, *, retry_for: float | None = None, **fields) -> dict:
        return self.request("PATCH", f"sessions/{session_id}", fields, retry_for=retry_for)

    @contextmanager
    def session(self, name: str, **fields):
        """`with sb.session("nightly import") as s:` makes a session (as
        `create_session`, taking its arguments; `running` unless a `status`
        is given) and ends it when the block ends: `completed` when it ends
        cleanly (`sys.exit(0)` included), `failed` when it raises, with the
        traceback as an ERROR line in the session's log; the exception goes
        on. A session that has ended meanwhile (cancelled in the pages) is
        left as it is."""
        fields.setdefault("status", "running")
        session = self.create_session(name, **fields)
        try:
            yield session
        except SystemExit as error:
            if error.code not in (None, 0):
                self._session_failed(session["id"], error)
                raise
            self._end_session(session["id"], "completed")
            raise
        except BaseException as error:
            self._session_failed(session["id"], error)
            raise
        self._end_session(session["id"], "completed")

    def _end_session(self, session_id, status: str) -> None:
        if self.get_session(session_id)["status"] not in ENDED:
            self.update_session(session_id, status=status)

    def _session_failed(self, session_id, error: BaseException) -> None:
        """Say why in the session's log and end it failed; a failure to say so
        is logged, never raised in place of `error`."""
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        message = f"the session's block raised {type(error).__name__}: {error}\n{text}"
        message = storable(message)
        message = message[len(message) - fitting(message[::-1], MAX_TEXT - 1024) :]
        entry = {"level": "ERROR", "logger": "switchboard_client", "message": message}
        try:
            self.log(session_id, [entry])
            self._end_session(session_id, "failed")
        except SwitchboardError as failure:
            logger.warning(
                "switchboard_client: could not end session %s as failed: %s", session_id, failure
            )

    # Tasks
    def create_task(
        self,
        session_id,
        name: str,
        external_id: str | None = None,
        stale_after: int | None = None,
        *,
        retry_for: float | None = None,
    ) -> dict:
        """`stale_after`: seconds without a report before the server fails
        the running task as lost (None: the server's default). Without an
        `external_id`, a random one is sent, so a retry makes no second task."""
        body: dict[str, Any] = {"name": name, "external_id": external_id or uuid.uuid4().hex}
        if stale_after is not None:
            body["stale_after"] = stale_after
        return self.request("POST", f"sessions/{session_id}/tasks", body, retry_for=retry_for)

    def get_task(self, task_id, *, retry_for: float | None = None) -> dict:
        return self.request("GET", f"tasks/{task_id}", retry_for=retry_for)

    def update_task(self, task_id, *, retry_for: float | None = None, **fields) -> dict:
        """Report on a task: status, progress, message, details, result, error, stale_after."""
        return self.request("PATCH", f"tasks/{task_id}", fields, retry_for=retry_for)

    def progress(
        self,
        task_id,
        progress: float,
        message: str | None = None,
        details=None,
        *,
        retry_for: float | None = None,
    ) -> dict:
        body: dict[str, Any] = {"progress": progress}
        if message is not None:
            body["message"] = message
        if details is not None:
            body["details"] = details
        return self.request("PATCH", f"tasks/{task_id}", body, retry_for=retry_for)

    def cancel_task(self, task_id, *, retry_for: float | None = None) -> dict:
        return self.request("POST", f"tasks/{task_id}/cancel", {}, retry_for=retry_for)

    def pause_task(self, task_id, *, retry_for: float | None = None) -> dict:
        """Ask the task's worker to hold: `{"task": ..., "changed": ...}`."""
        return self.request("POST", f"tasks/{task_id}/pause", {}, retry_for=retry_for)

    def resume_task(self, task_id, *, retry_for: float | None = None) -> dict:
        return self.request("POST", f"tasks/{task_id}/resume", {}, retry_for=retry_for)

    def wait_while_paused(self, task_id, poll: float = 1.0) -> dict:
        """Block while the task's `pause_requested` is true (someone pressed
        Pause), asking the server every `poll` seconds; return the task once
        it is resumed, cancelled or ended (a cancel clears the pause, so check
        `cancel_requested` after). While the server is away it keeps asking."""
        while True:
            try:
                task = self.get_task(task_id)
            except SwitchboardError as error:
                if not transient(error.status or 0):
                    raise
            else:
                if not task.get("pause_requested"):
                    return task
            time.sleep(poll)

    def output(
        self, task_id, chunk: str, final: bool = False, *, retry_for: float | None = None
    ) -> dict:
        """Stream a chunk of the task's output (tokens, stdout); final=True ends it."""
        # A uid of its own: a retry after a lost answer stores the chunk once.
        body = {"chunk": chunk, "final": final, "uid": uuid.uuid4().hex}
        return self.request("POST", f"tasks/{task_id}/output", body, retry_for=retry_for)

    def status(self, task_id, status: str, message: str | None = None, **data) -> dict:
        """Record a step between output chunks: `thinking`, `tool_calling`,
        `tool_completed`, `completed` or another lowercase word; `data` is any
        JSON (for a tool: tool=, args=; at its end: result= or error=). Every
        keyword is data, so this call keeps trying for the client's `retry_for`."""
        body: dict[str, Any] = {"status": status, "data": data, "uid": uuid.uuid4().hex}
        if message is not None:
            body["message"] = message
        return self.request("POST", f"tasks/{task_id}/output", body)

    @contextmanager
    def tool(self, task_id, tool: str, message: str | None = None, **args):
        """`with sb.tool(task_id, "search", q="...") as call:` records
        `tool_calling` on entry and `tool_completed` on exit, with the seconds
        it took and the error if one was raised (which goes on). Set
        `call["result"]` inside to report what came back."""
        call: dict[str, Any] = {}
        self.status(task_id, "tool_calling", message, tool=tool, args=args)
        started = time.monotonic()
        try:
            yield call
        except BaseException as error:
            self.status(
                task_id,
                "tool_completed",
                tool=tool,
                seconds=round(time.monotonic() - started, 3),
                error=f"{type(error).__name__}: {error}",
            )
            raise
        self.status(
            task_id,
            "tool_completed",
            tool=tool,
            seconds=round(time.monotonic() - started, 3),
            **({"result": call["result"]} if "result" in call else {}),
        )

    # Questions
    def ask(
        self,
        task_id,
        prompt: str,
        choices: list[str] | None = None,
        default: str | None = None,
        timeout: float | None = None,
        *,
        retry_for: float | None = None,
    ) -> str | None:
        """Ask a person a question on the task and wait for the answer: one
        of `choices` (or any text when there are none), or `default` once
        `timeout` seconds have passed unanswered (None when there is none).
        Each call rides through a server restart (for `retry_for`); the
        question has a `uid`, so a retry asks it once."""
        body = question_body(prompt, choices, default, timeout)
        question = self.request("POST", f"tasks/{task_id}/questions", body, retry_for=retry_for)
        while question["status"] == "open":
            question = self.request(
                "GET",
                f"questions/{question['id']}",
                params={"wait": self.WAIT},
                timeout=self.timeout + self.WAIT,
                retry_for=retry_for,
            )
        return question["answer"]

    # Logs and events
    def log(
        self,
        session_id,
        entries: list[dict],
        timeout: float | None = None,
        *,
        retry_for: float | None = None,
    ) -> dict:
        """Append entries; each without a `uid` gets one, so that a retry
        stores none twice."""
        entries = [
            entry if entry.get("uid") else {**entry, "uid": uuid.uuid4().hex} for entry in entries
        ]
        body = {"entries": entries}
        return self.request(
            "POST", f"sessions/{session_id}/logs", body, timeout=timeout, retry_for=retry_for
        )

    def logs(self, session_id, **params) -> dict:
        return self.request("GET", f"sessions/{session_id}/logs", params=params)

    def events(self, channel: str | None = None, since: int = 0, **params) -> dict:
        return self.request("GET", "events", params={"channel": channel, "since": since, **params})


# How a Reporter's or LogHandler's sending went: what to do next.
_NOTHING, _SENT, _MORE, _AGAIN, _FAILED = range(5)

REFUSED = "refused by the server and dropped"
TOO_LARGE = "too large to send and dropped"
UNSENT = "not sent: the server did not take them before close"


class Reporter:
    """A chatty worker's reports, coalesced into a few requests a second.

        with Reporter(sb, session["id"]) as report:
            report.progress(task["id"], 42.0, message="42 of 100")  # the latest wins
            report.output(task["id"], "token ")  # joined with the next chunks
            report.status(task["id"], "tool_calling", tool="search")
            report.log("fetched 3 pages", task_id=task["id"])

    Every `interval` seconds (0.2) a thread sends what came in one request
    (`POST /sessions/<id>/batch`, one transaction): each task's latest report
    first, then output chunks and steps in the order given (consecutive chunks
    of a task joined), then log lines. It never blocks or raises into the job:
    when the server is down it keeps what came (bounded) and tries again; log
    lines, output chunks and steps carry uids, so a retry stores none twice
    (a chunk sent once is not added to afterwards). `close()` sends the rest
    and returns within `timeout` seconds.

    A request body stays under `max_body` bytes (4 MiB), and under less after
    the server found one too large (see `switchboard_client.limits`): what is
    held goes in as many requests as it takes, one after the other, and an
    output chunk or log line too long for one is cut in parts. NUL and lone
    surrogates in text become U+FFFD before they are held. When the server
    refuses items (a 400 naming them, as `logs.3.level`), only those are
    dropped and the rest is sent again. Nothing is dropped without a word:
    `losses()` says what was lost and why, counted by kind, and each loss the
    server can still hear of is an ERROR line in the session's log.
    """

    MAX_CHUNK = 256 * 1024
    MAX_PENDING = 10000
    MAX_BODY = 4 * 1024 * 1024
    MOST = {"tasks": 1000, "output": 1000, "logs": 10000}  # the batch endpoint's bounds

    def __init__(
        self, client: Client, session_id, interval: float = 0.2, max_body: int = MAX_BODY
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.interval = interval
        self.limit = BodyLimit(max_body)
        self.errors: list[str] = []
        self.sent = 0  # requests the server took
        self.dropped = 0  # items dropped while MAX_PENDING waited
        self.lost: dict[tuple[str, str], int] = {}  # (what, how): count
        self._why: dict[tuple[str, str], str] = {}
        self._notices: set[str] = set()  # uids of our own lines about losses
        self._dropped_said = 0
        self._left = False
        self._lock = threading.Lock()
        self._reports: dict[str, dict] = {}
        self._output: list[dict] = []
        # Output items sent once and kept for another try: their text stays as
        # sent (a retry with the same uid that the server stored adds nothing).
        self._tried: set[int] = set()
        self._logs: list[dict] = []
        self._sending = False
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switchboard-reporter", daemon=True)
        self._thread.start()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def report(self, task_id, **fields) -> None:
        """Any task fields (status, progress, message, details, result, error);
        of several reports before a send, each field's latest value goes."""
        fields = storable(fields)
        with self._lock:
            self._reports.setdefault(str(task_id), {}).update(fields)

    def progress(self, task_id, progress: float, message: str | None = None, **fields) -> None:
        if message is not None:
            fields["message"] = message
        self.report(task_id, progress=progress, **fields)

    def output(self, task_id, chunk: str, final: bool = False) -> None:
        chunk = storable(chunk)
        with self._lock:
            last = self._output[-1] if self._output else None
            if (
                last is not None
                and last.get("task_id") == str(task_id)
                and "chunk" in last
                and not last["final"]
                and len(last["chunk"]) + len(chunk) <= self.MAX_CHUNK
                and id(last) not in self._tried
            ):
                last["chunk"] += chunk
                last["final"] = bool(final)
            else:
                item = {"task_id": str(task_id), "chunk": chunk, "final": final}
                self._add(self._output, {**item, "uid": uuid.uuid4().hex})

    def status(self, task_id, status: str, message: str | None = None, **data) -> None:
        step: dict[str, Any] = {"task_id": str(task_id), "status": status, "data": data}
        if message is not None:
            step["message"] = message
        step = storable(step)
        step["uid"] = uuid.uuid4().hex
        with self._lock:
            self._add(self._output, step)

    def log(self, message: str, level: str | int = "INFO", task_id=None, **extra) -> None:
        entry: dict[str, Any] = {
            "uid": uuid.uuid4().hex,
            "ts": datetime.now(timezone.utc).isoformat(),
            "level": level,
            "message": message,
        }
        if task_id is not None:
            entry["task_id"] = str(task_id)
        if extra:
            entry["extra"] = extra
        entry = storable(entry)
        with self._lock:
            self._add(self._logs, entry)

    def entry(self, entry: dict) -> None:
        """A log entry already made (as `LogHandler` makes them: uid, ts,
        level, logger, message, task_id, extra), sent with the next batch."""
        entry = storable({"uid": uuid.uuid4().hex, **entry})
        with self._lock:
            self._add(self._logs, entry)

    def losses(self) -> list[str]:
        """What was lost, one sentence for each kind of loss, with counts."""
        with self._lock:
            said = []
            for (what, how), count in self.lost.items():
                why = self._why.get((what, how))
                said.append(f"{how}: {count} {what}" + (f" ({why})" if why else ""))
            return said

    def _add(self, items: list, item: dict) -> None:
        if len(items) >= self.MAX_PENDING:
            self._count("logs" if items is self._logs else "output", [items.pop(0)], self._full)
            self.dropped += 1
        items.append(item)

    @property
    def _full(self) -> str:
        return f"dropped while more than {self.MAX_PENDING} waited to be sent"

    def _count(self, part: str, items: list[dict], how: str, why: str | None = None) -> dict:
        """Count items lost (under the lock); our own notices do not count."""
        counts: dict[str, int] = {}
        for item in items:
            if item.get("uid") in self._notices:
                continue
            if part == "tasks":
                what = "task reports"
            elif part == "logs":
                what = "log lines"
            else:
                what = "output chunks" if "chunk" in item else "steps"
            counts[what] = counts.get(what, 0) + 1
        for what, count in counts.items():
            self.lost[what, how] = self.lost.get((what, how), 0) + count
            if why:
                self._why.setdefault((what, how), why[:300])
        return counts

    def _lose(self, part: str, items: list[dict], how: str, why: str | None = None) -> None:
        """Drop items (under the lock): counted, and said in the session's log."""
        for what, count in self._count(part, items, how, why).items():
            self._notice(f"switchboard: {how}: {count} {what}" + (f" ({why})" if why else ""))

    def _notice(self, message: str) -> None:
        entry = {
            "uid": uuid.uuid4().hex,
            "ts": datetime.now(timezone.utc).isoformat(),
            "level": "ERROR",
            "logger": "switchboard",
            "message": storable(message),
        }
        self._notices.add(entry["uid"])
        self._logs.append(entry)

    def flush(self, timeout: float = 10.0) -> bool:
        """Send what came now; True when nothing is left."""
        deadline = time.monotonic() + timeout
        while True:
            outcome = self._send()
            if self._idle():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if outcome == _FAILED:
                time.sleep(min(0.5, left))
            elif outcome == _NOTHING:  # the thread is sending
                time.sleep(min(0.02, left))

    def close(self, timeout: float = 10.0) -> None:
        """Send the rest, within `timeout` s; what is left then is counted as lost."""
        self._closed.set()
        self._thread.join(timeout=1)
        self.flush(timeout=timeout)
        with self._lock:
            if not self._sending:
                self._count("tasks", [{} for _ in self._reports], UNSENT)
                self._count("output", self._output, UNSENT)
                self._count("logs", self._logs, UNSENT)
                self._reports, self._output, self._logs = {}, [], []

    def _idle(self) -> bool:
        with self._lock:
            return not (self._reports or self._output or self._logs or self._sending)

    def _run(self) -> None:
        pause = self.interval
        while not self._closed.wait(pause):
            outcome = self._send()
            if outcome == _FAILED:
                pause = min(max(pause, self.interval) * 2, 10.0)
            elif outcome in (_MORE, _AGAIN):
                pause = 0  # what waits did not fit in one request: on with it
            else:
                pause = self.interval

    def _take(self) -> dict[str, list[dict]]:
        """The next request's items (under the lock), its body under the limit."""
        if self.dropped > self._dropped_said:
            self._notice(f"switchboard: {self._full}: {self.dropped - self._dropped_said} items")
            self._dropped_said = self.dropped
        room = self.limit.now - 64
        batch: dict[str, list[dict]] = {}
        reports = [{"id": task_id, **fields} for task_id, fields in self._reports.items()]
        for part, items in (("tasks", reports), ("output", self._output), ("logs", self._logs)):
            key = {"output": "chunk", "logs": "message"}.get(part)
            alone = not any(batch.values())
            count, dropped = take(
                items, room, self.MOST[part], key, alone, self.limit.max_body, part == "output"
            )
            batch[part] = items[:count]
            del items[:count]
            room -= sum(encoded_size(item) + 2 for item in batch[part])
            if dropped:
                self._lose(part, dropped, TOO_LARGE, f"over {self.limit.max_body} bytes")
        self._reports = {report.pop("id"): report for report in reports}
        self._left = bool(self._reports or self._output or self._logs)
        return batch

    def _keep(self, batch: dict[str, list[dict]]) -> None:
        """Put a batch back in front, older first, for the next try (under the lock)."""
        for report in batch["tasks"]:
            fields = {k: v for k, v in report.items() if k != "id"}
            self._reports[report["id"]] = {**fields, **self._reports.get(report["id"], {})}
        self._output[:0] = batch["output"]
        self._tried.update(id(item) for item in batch["output"])
        self._logs[:0] = batch["logs"]

    def _send(self) -> int:
        """One request: _SENT, _MORE (more is waiting), _AGAIN (try again at
        once: smaller, or without what the server refused), _FAILED (kept for
        later), _NOTHING (nothing to send, or the other thread is sending)."""
        with self._lock:
            if self._sending or not (self._reports or self._output or self._logs):
                return _NOTHING
            self._sending = True
            batch = self._take()
        try:
            if not any(batch.values()):
                return _AGAIN
            body = {"tasks": batch["tasks"], "output": batch["output"], "logs": batch["logs"]}
            size = encoded_size(body)
            try:
                # What is not taken is kept and sent again by this thread.
                self.client.request("POST", f"sessions/{self.session_id}/batch", body, retry_for=0)
            except SwitchboardError as error:
                with self._lock:
                    return self._failed(batch, size, error)
            self.limit.fits()
            with self._lock:
                self._tried.difference_update(id(item) for item in batch["output"])
            self.sent += 1
            return _MORE if self._left else _SENT
        finally:
            with self._lock:
                self._sending = False

    def _failed(self, batch: dict[str, list[dict]], size: int, error: SwitchboardError) -> int:
        """What to do with a batch the server did not take (under the lock)."""
        status = error.status
        if status == 413:
            items = [item for part in batch.values() for item in part]
            text = (items[0].get("chunk") or items[0].get("message")) if len(items) == 1 else None
            if (len(items) > 1 or (text and len(text) > 1)) and self.limit.too_large(size):
                self._keep(batch)
                return _AGAIN
            for part, items in batch.items():
                self._lose(part, items, TOO_LARGE, str(error))
            return _AGAIN
        if status in (0, 408, 429) or status >= 500:
            self._keep(batch)
            # An early 413 reads as a cut connection: a smaller body goes at once.
            return _AGAIN if status == 0 and self.limit.cut_off(size) else _FAILED
        named = {part: refused_items(error.body, part) for part in batch}
        if not any(index < len(batch[part]) for part, found in named.items() for index in found):
            # No item named: the request itself was refused (the session is
            # gone, the token revoked). Retrying cannot help.
            self.errors.append(str(error))
            for part, items in batch.items():
                self._lose(part, items, REFUSED, str(error))
            return _FAILED
        # All or nothing: nothing was stored. Drop what was named, send the rest.
        for part, found in named.items():
            refused = [item for index, item in enumerate(batch[part]) if index in found]
            if refused:
                self._lose(part, refused, REFUSED, "; ".join(found.values()))
            batch[part] = [item for index, item in enumerate(batch[part]) if index not in found]
        self._keep(batch)
        return _AGAIN


# What every LogRecord has; anything else on a record came from `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def _extra(record: logging.LogRecord) -> dict | None:
    """A record's `extra=` fields, as JSON (values it cannot encode as their repr)."""
    fields = {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_FIELDS and not key.startswith("_")
    }
    if not fields:
        return None
    try:
        return json.loads(json.dumps(fields, default=repr))
    except (TypeError, ValueError):  # a key that is no string, a circular value
        return {str(key): repr(value) for key, value in fields.items()}


def _entry(record: logging.LogRecord, message: str, task_id) -> dict:
    entry = {
        "uid": uuid.uuid4().hex,
        "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
        "level": record.levelno,
        "logger": record.name[:200],
        "message": message,
    }
    if task_id is not None:
        entry["task_id"] = str(task_id)
    extra = _extra(record)
    if extra:
        entry["extra"] = extra
    return storable(entry)


class LogHandler(logging.Handler):
    """A logging.Handler that ships records to a session in batches, in the background.

    Requests stay under `max_body` bytes, as the Reporter's do; a message too
    long for one is cut in parts. Lines the server refuses (a 400 naming
    them, as `entries.3.level`) are dropped and the rest sent again; lines
    dropped for any reason are counted, said in the session's log by a
    WARNING line, and, at close(), once for each kind of loss on stderr.

    A token the server refuses (401, 403) is said once on stderr, and the
    handler keeps its lines (up to `capacity`; past it, the newest are
    dropped and counted) and tries again with backoff until the token is
    accepted, or close() gives up on them; `refused` is the refusal meanwhile.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        session_id,
        task_id=None,
        *,
        batch_size: int = 500,
        interval: float = 0.5,
        capacity: int = 100_000,
        timeout: float = 5.0,
        max_body: int = Reporter.MAX_BODY,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        # Batches not taken wait in this thread's own backoff, not in the call.
        self.client = Client(base_url, token, timeout=timeout, retry_for=0)
        self.session_id = session_id
        self.task_id = task_id
        self.batch_size = batch_size
        self.interval = interval
        self.queue: queue.Queue[dict] = queue.Queue(maxsize=capacity)
        self.dropped = 0
        self.sent = 0
        self.failures = 0
        self.refused: SwitchboardError | None = None  # the token's refusal, until accepted
        self.limit = BodyLimit(max_body)
        self.lost: dict[str, int] = {}  # how: lines, since the start
        self._notes: list[str] = []  # what to say in the log about lines dropped
        self._notices: set[str] = set()  # uids of those lines
        self._pending: list[dict] = []
        self._moving = threading.Lock()
        self._stop = threading.Event()
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, name="switchboard-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        if threading.current_thread() is self._thread:
            return  # never log our own sending into ourselves
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + self.formatter_for_exc().formatException(record.exc_info)
            elif record.exc_text:
                message += "\n" + record.exc_text
            if record.stack_info:
                message += "\n" + record.stack_info
            self.queue.put_nowait(_entry(record, message, self.task_id))
        except queue.Full:
            self.dropped += 1
        except Exception:
            self.handleError(record)

    def formatter_for_exc(self) -> logging.Formatter:
        return self.formatter or logging.Formatter()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (at most `timeout` s) until every queued line is stored."""
        end = time.monotonic() + timeout
        while not self._idle() and time.monotonic() < end:
            time.sleep(0.02)
        return self._idle()

    def _idle(self) -> bool:
        with self._moving:
            return self.queue.empty() and not self._pending

    def close(self) -> None:
        """Send what is left, giving up after 10 s in all if the server does not answer."""
        if not self._stop.is_set():
            self._deadline = time.monotonic() + 9.0
            self._stop.set()
            self._thread.join(timeout=9.5)
            with self._moving:
                unsent = self.queue.qsize() + len(self._pending)
            if unsent:
                self._lose(unsent, UNSENT)
            for how, count in self.lost.items():
                print(f"switchboard_client: {how}: {count} log lines", file=sys.stderr)
        super().close()

    def _lose(self, count: int, how: str, why: str | None = None) -> None:
        self.lost[how] = self.lost.get(how, 0) + count
        self._notes.append(f"{how}: {count} log lines" + (f" ({why[:300]})" if why else ""))

    # The sender thread.

    def _run(self) -> None:
        delay = 0.5
        while True:
            self._collect()
            if self._pending:
                if self._send():
                    delay = 0.5
                else:
                    self._wait(delay)
                    delay = min(delay * 2, 30.0)
                    if self._stop.is_set() and time.monotonic() >= (self._deadline or 0):
                        return
                continue
            if self._stop.is_set() and self.queue.empty():
                return
            self._wait(self.interval)

    def _collect(self) -> None:
        with self._moving:
            while len(self._pending) < self.batch_size:
                try:
                    self._pending.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if self.dropped:
                dropped, self.dropped = self.dropped, 0
                self._lose(dropped, "dropped: the queue was full while none could be sent")
            while self._notes and len(self._pending) < self.batch_size:
                note = logging.LogRecord(
                    "switchboard_client",
                    logging.WARNING,
                    __file__,
                    0,
                    "switchboard: %s",
                    (self._notes.pop(0),),
                    None,
                )
                entry = _entry(note, note.getMessage(), self.task_id)
                self._notices.add(entry["uid"])
                self._pending.append(entry)

    def _send(self) -> bool:
        """Send lines from the front of the pending ones: False when they are
        kept for a later try, after a wait."""
        timeout = self.client.timeout
        if self._deadline is not None:
            timeout = max(0.1, min(timeout, self._deadline - time.monotonic()))
        with self._moving:
            room = self.limit.now - 32
            count, dropped = take(self._pending, room, 10000, "message", True, self.limit.max_body)
            entries = self._pending[:count]
        if dropped:
            self._lose(len(dropped), TOO_LARGE, f"over {self.limit.max_body} bytes")
        if not entries:
            return True
        size = encoded_size({"entries": entries})
        try:
            self.client.log(self.session_id, entries, timeout=timeout)
        except SwitchboardError as error:
            self.failures += 1
            return self._failed(entries, size, error)
        except Exception:
            self.failures += 1
            return False
        self.sent += len(entries)
        self.refused = None
        self.limit.fits()
        with self._moving:
            del self._pending[: len(entries)]
        return True

    def _failed(self, entries: list[dict], size: int, error: SwitchboardError) -> bool:
        if error.status == 413:
            splittable = len(entries) > 1 or len(entries[0]["message"]) > 1
            if splittable and self.limit.too_large(size):
                return True  # smaller, at once
            self._drop(range(len(entries)), TOO_LARGE, str(error))
            return True
        if error.status in (0, 408, 429) or error.status >= 500:
            return error.status == 0 and self.limit.cut_off(size)
        if error.status in (401, 403):
            if self.refused is None:
                print(
                    f"switchboard_client: the server refused the token ({error}): log lines"
                    f" for session {self.session_id} are kept (up to {self.queue.maxsize})"
                    " and sent once it is accepted",
                    file=sys.stderr,
                    flush=True,
                )
            self.refused = error
            return False  # kept, for a later try
        named = {
            i: why for i, why in refused_items(error.body, "entries").items() if i < len(entries)
        }
        if named:
            # All or nothing: none was stored. Drop what was named, send the rest.
            self._drop(named, REFUSED, "; ".join(named.values()))
        else:  # the request itself was refused; retrying cannot help
            self._drop(range(len(entries)), REFUSED, str(error))
        return True

    def _drop(self, indexes, how: str, why: str) -> None:
        """Drop these of the pending lines, and say so."""
        indexes = set(indexes)
        with self._moving:
            ours = sum(1 for i in indexes if self._pending[i]["uid"] in self._notices)
            self._pending = [e for i, e in enumerate(self._pending) if i not in indexes]
        if len(indexes) > ours:  # a note about notes lost would never end
            self._lose(len(indexes) - ours, how, why)

    def _wait(self, seconds: float) -> None:
        if self._deadline is not None:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        if self._stop.is_set():
            time.sleep(min(seconds, 0.2))
        else:
            self._stop.wait(seconds)

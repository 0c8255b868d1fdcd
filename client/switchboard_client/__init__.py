"""Switchboard client for workers: the standard library only.

    from switchboard_client import Client, LogHandler

    sb = Client("http://localhost:8000", token)
    session = sb.create_session("nightly import", external_id="import-2026-11-21")
    task = sb.create_task(session["id"], "load customers")
    sb.update_task(task["id"], status="running")
    sb.progress(task["id"], 42.5, message="42,500 of 100,000 rows")

    logging.getLogger().addHandler(LogHandler("http://localhost:8000", token, session["id"]))

LogHandler batches records in a background thread. It never blocks or
raises into the job: when the server is slow or down it keeps lines in a
bounded queue and retries with the same entry uids, so a retry stores
nothing twice; close() flushes and returns within 10 s even when the server
is down.

`pip install ./client` also gives the `switchboard` command (run, tail, ls):
see switchboard_client.cli.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

__all__ = ["Client", "LogHandler", "Reporter", "SwitchboardError"]
__version__ = "1.0.0"


class SwitchboardError(Exception):
    """An HTTP error answer (status and body), or the server could not be reached (status 0)."""

    def __init__(
        self, status: int, message: str, body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.body = body
        self.retry_after = retry_after  # seconds, from a 429's Retry-After


class Client:
    """`throttle_wait`: seconds a call may spend waiting out 429 answers
    (each as long as the server's Retry-After says) before it raises."""

    def __init__(
        self, base_url: str, token: str, timeout: float = 10.0, throttle_wait: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.throttle_wait = throttle_wait

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict | None = None,
        timeout: float | None = None,
    ) -> Any:
        url = f"{self.base_url}/api/v1/{path.lstrip('/')}"
        if params:
            query = {k: v for k, v in params.items() if v is not None}
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        waited = 0.0
        while True:
            try:
                return self._send(method, url, data, timeout)
            except SwitchboardError as error:
                if error.status != 429 or waited >= self.throttle_wait:
                    raise
                pause = min(error.retry_after or 1.0, self.throttle_wait - waited)
                time.sleep(pause)
                waited += pause

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
            raw = error.read()
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = raw.decode(errors="replace")
            message = detail.get("detail", "") if isinstance(detail, dict) else str(detail)
            try:
                retry_after = float(error.headers.get("Retry-After", ""))
            except ValueError:
                retry_after = None
            raise SwitchboardError(
                error.code, message or error.reason, detail, retry_after
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise SwitchboardError(0, f"cannot reach {self.base_url}: {reason}") from None
        return json.loads(raw) if raw else None

    # Sessions
    def create_session(
        self, name: str, metadata: dict | None = None, external_id: str | None = None
    ) -> dict:
        body: dict[str, Any] = {"name": name}
        if metadata is not None:
            body["metadata"] = metadata
        if external_id is not None:
            body["external_id"] = external_id
        return self.request("POST", "sessions", body)

    def get_session(self, session_id) -> dict:
        return self.request("GET", f"sessions/{session_id}")

    def update_session(self, session_id, **fields) -> dict:
        return self.request("PATCH", f"sessions/{session_id}", fields)

    # Tasks
    def create_task(self, session_id, name: str, external_id: str | None = None) -> dict:
        body: dict[str, Any] = {"name": name}
        if external_id is not None:
            body["external_id"] = external_id
        return self.request("POST", f"sessions/{session_id}/tasks", body)

    def get_task(self, task_id) -> dict:
        return self.request("GET", f"tasks/{task_id}")

    def update_task(self, task_id, **fields) -> dict:
        """Report on a task: status, progress, message, details, result, error."""
        return self.request("PATCH", f"tasks/{task_id}", fields)

    def progress(self, task_id, progress: float, message: str | None = None, details=None) -> dict:
        body: dict[str, Any] = {"progress": progress}
        if message is not None:
            body["message"] = message
        if details is not None:
            body["details"] = details
        return self.request("PATCH", f"tasks/{task_id}", body)

    def cancel_task(self, task_id) -> dict:
        return self.request("POST", f"tasks/{task_id}/cancel", {})

    def output(self, task_id, chunk: str, final: bool = False) -> dict:
        """Stream a chunk of the task's output (tokens, stdout); final=True ends it."""
        return self.request("POST", f"tasks/{task_id}/output", {"chunk": chunk, "final": final})

    def status(self, task_id, status: str, message: str | None = None, **data) -> dict:
        """Record a step between output chunks: `thinking`, `tool_calling`,
        `tool_completed`, `completed` or another lowercase word; `data` is any
        JSON (for a tool: tool=, args=; at its end: result= or error=)."""
        body: dict[str, Any] = {"status": status, "data": data}
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

    # Logs and events
    def log(self, session_id, entries: list[dict], timeout: float | None = None) -> dict:
        return self.request(
            "POST", f"sessions/{session_id}/logs", {"entries": entries}, timeout=timeout
        )

    def logs(self, session_id, **params) -> dict:
        return self.request("GET", f"sessions/{session_id}/logs", params=params)

    def events(self, channel: str | None = None, since: int = 0, **params) -> dict:
        return self.request("GET", "events", params={"channel": channel, "since": since, **params})


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
    lines carry uids, so a retry stores none twice (an output chunk may repeat
    if an answer is lost after the server stored it). `close()` sends the rest
    and returns within `timeout` seconds.
    """

    MAX_CHUNK = 256 * 1024
    MAX_PENDING = 10000

    def __init__(self, client: Client, session_id, interval: float = 0.2) -> None:
        self.client = client
        self.session_id = session_id
        self.interval = interval
        self.errors: list[str] = []
        self.dropped = 0
        self._lock = threading.Lock()
        self._reports: dict[str, dict] = {}
        self._output: list[dict] = []
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
        with self._lock:
            self._reports.setdefault(str(task_id), {}).update(fields)

    def progress(self, task_id, progress: float, message: str | None = None, **fields) -> None:
        if message is not None:
            fields["message"] = message
        self.report(task_id, progress=progress, **fields)

    def output(self, task_id, chunk: str, final: bool = False) -> None:
        with self._lock:
            last = self._output[-1] if self._output else None
            if (
                last is not None
                and last.get("task_id") == str(task_id)
                and "chunk" in last
                and not last["final"]
                and len(last["chunk"]) + len(chunk) <= self.MAX_CHUNK
            ):
                last["chunk"] += chunk
                last["final"] = bool(final)
            else:
                self._add(self._output, {"task_id": str(task_id), "chunk": chunk, "final": final})

    def status(self, task_id, status: str, message: str | None = None, **data) -> None:
        step: dict[str, Any] = {"task_id": str(task_id), "status": status, "data": data}
        if message is not None:
            step["message"] = message
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
        with self._lock:
            self._add(self._logs, entry)

    def _add(self, items: list, item: dict) -> None:
        if len(items) >= self.MAX_PENDING:
            items.pop(0)
            self.dropped += 1
        items.append(item)

    def flush(self, timeout: float = 10.0) -> bool:
        """Send what came now; True when nothing is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._send() and self._idle():
                return True
            if self._idle():
                return True
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return self._idle()

    def close(self, timeout: float = 10.0) -> None:
        self._closed.set()
        self._thread.join(timeout=1)
        self.flush(timeout=timeout)

    def _idle(self) -> bool:
        with self._lock:
            return not (self._reports or self._output or self._logs or self._sending)

    def _run(self) -> None:
        backoff = self.interval
        while not self._closed.wait(backoff):
            backoff = self.interval if self._send() is not False else min(backoff * 2, 10.0)

    def _send(self) -> bool | None:
        """One batch: True sent, False failed (kept for later), None nothing to send."""
        with self._lock:
            if self._sending or not (self._reports or self._output or self._logs):
                return None
            self._sending = True
            reports, self._reports = self._reports, {}
            output, self._output = self._output, []
            logs, self._logs = self._logs, []
        body = {
            "tasks": [{"id": task_id, **fields} for task_id, fields in reports.items()],
            "output": output,
            "logs": logs,
        }
        try:
            self.client.request("POST", f"sessions/{self.session_id}/batch", body)
            return True
        except SwitchboardError as error:
            if error.status in (0, 408, 429) or error.status >= 500:
                with self._lock:  # keep it, older first, for the next try
                    for task_id, fields in reports.items():
                        self._reports[task_id] = {**fields, **self._reports.get(task_id, {})}
                    self._output[:0] = output
                    self._logs[:0] = logs
            else:
                self.errors.append(str(error))
            return False
        finally:
            with self._lock:
                self._sending = False


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
    return entry


class LogHandler(logging.Handler):
    """A logging.Handler that ships records to a session in batches, in the background."""

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
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        # Throttled batches wait in this thread's own backoff, not in the call.
        self.client = Client(base_url, token, timeout=timeout, throttle_wait=0)
        self.session_id = session_id
        self.task_id = task_id
        self.batch_size = batch_size
        self.interval = interval
        self.queue: queue.Queue[dict] = queue.Queue(maxsize=capacity)
        self.dropped = 0
        self.sent = 0
        self.failures = 0
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
        super().close()

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
            if self.dropped and len(self._pending) < self.batch_size:
                dropped, self.dropped = self.dropped, 0
                note = logging.LogRecord(
                    "switchboard_client",
                    logging.WARNING,
                    __file__,
                    0,
                    "%d log lines were dropped: the queue was full while the server was away",
                    (dropped,),
                    None,
                )
                self._pending.append(_entry(note, note.getMessage(), self.task_id))

    def _send(self) -> bool:
        timeout = self.client.timeout
        if self._deadline is not None:
            timeout = max(0.1, min(timeout, self._deadline - time.monotonic()))
        try:
            self.client.log(self.session_id, self._pending, timeout=timeout)
        except SwitchboardError as error:
            self.failures += 1
            if 400 <= error.status < 500 and error.status not in (408, 429):
                # The server refused the batch itself; retrying cannot help.
                self._pending = []
                return True
            return False
        except Exception:
            self.failures += 1
            return False
        self.sent += len(self._pending)
        self._pending = []
        return True

    def _wait(self, seconds: float) -> None:
        if self._deadline is not None:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        if self._stop.is_set():
            time.sleep(min(seconds, 0.2))
        else:
            self._stop.wait(seconds)

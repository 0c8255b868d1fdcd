"""Switchboard client for workers: the standard library only, one file.

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
from datetime import datetime, timezone
from typing import Any

__all__ = ["Client", "LogHandler", "SwitchboardError"]
__version__ = "1.0.0"


class SwitchboardError(Exception):
    """An HTTP error answer (status and body), or the server could not be reached (status 0)."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.body = body


class Client:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

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
            raise SwitchboardError(error.code, message or error.reason, detail) from None
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

    # Logs and events
    def log(self, session_id, entries: list[dict], timeout: float | None = None) -> dict:
        return self.request(
            "POST", f"sessions/{session_id}/logs", {"entries": entries}, timeout=timeout
        )

    def logs(self, session_id, **params) -> dict:
        return self.request("GET", f"sessions/{session_id}/logs", params=params)

    def events(self, channel: str | None = None, since: int = 0, **params) -> dict:
        return self.request("GET", "events", params={"channel": channel, "since": since, **params})


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
        self.client = Client(base_url, token, timeout=timeout)
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

"""`AsyncClient`: the methods of `Client`, awaited, over httpx.

    from switchboard_client import AsyncClient

    async with AsyncClient("http://localhost:8000", token) as sb:
        async with sb.session("nightly import") as session:
            task = await sb.create_task(session["id"], "load customers")
            await sb.progress(task["id"], 42.5, message="42,500 of 100,000 rows")

It needs httpx (`pip install ./client[async]`); the rest of the package
does not. Every method is the `Client` method of the same name and
arguments, as a coroutine (`session()` and `tool()` as async context
managers), with the same retries (switchboard_client.retry: the same
transient answers, pauses, Retry-After floor and `retry_for`), the same
keys that make a retry store nothing twice, and the same `SwitchboardError`.
Inside `async with` the calls share one connection pool; without it, each
call opens and closes its own connections, so an instance may be used from
any event loop.
"""

from __future__ import annotations

import asyncio
import json
import traceback
import uuid
from contextlib import asynccontextmanager
from typing import Any

import httpx

from switchboard_client import (
    ENDED,
    Client,
    SwitchboardError,
    call_parts,
    error_detail,
    logger,
    pause_after,
    question_body,
)
from switchboard_client.limits import MAX_TEXT, fitting, storable
from switchboard_client.retry import Backoff, retry_after, transient


class AsyncClient:
    """`Client`'s calls for asyncio code (async jobs, agent frameworks)."""

    RETRY_FOR = Client.RETRY_FOR

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
        self._http: httpx.AsyncClient | None = None

    @property
    def throttle_wait(self) -> float:
        return self.retry_for

    async def __aenter__(self) -> AsyncClient:
        self._http = httpx.AsyncClient(follow_redirects=True)
        return self

    async def __aexit__(self, *exc) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def request(
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
                return await self._send(method, url, data, timeout)
            except SwitchboardError as error:
                await asyncio.sleep(pause_after(error, backoff, method, path))

    async def _send(self, method: str, url: str, data: bytes | None, timeout: float | None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            if self._http is not None:
                response = await self._http.request(
                    method, url, content=data, headers=headers, timeout=timeout or self.timeout
                )
            else:  # connections of one call: closed when it is answered
                headers["Connection"] = "close"
                async with httpx.AsyncClient(follow_redirects=True) as http:
                    response = await http.request(
                        method, url, content=data, headers=headers, timeout=timeout or self.timeout
                    )
        except httpx.HTTPError as error:
            reason = str(error) or error.__class__.__name__
            raise SwitchboardError(0, f"cannot reach {self.base_url}: {reason}") from None
        raw = response.content
        if response.status_code >= 400:
            detail, message = error_detail(raw)
            raise SwitchboardError(
                response.status_code,
                message or response.reason_phrase,
                detail,
                retry_after(response.headers.get("Retry-After")),
            )
        return json.loads(raw) if raw else None

    # Sessions
    async def create_session(
        self,
        name: str,
        metadata: dict | None = None,
        external_id: str | None = None,
        *,
        status: str | None = None,
        retry_for: float | None = None,
    ) -> dict:
        body: dict[str, Any] = {"name": name, "external_id": external_id or uuid.uuid4().hex}
        if metadata is not None:
            body["metadata"] = metadata
        if status is not None:
            body["status"] = status
        return await self.request("POST", "sessions", body, retry_for=retry_for)

    async def get_session(self, session_id, *, retry_for: float | None = None) -> dict:
        return await self.request("GET", f"sessions/{session_id}", retry_for=retry_for)

    async def update_session(self, session_id, *, retry_for: float | None = None, **fields) -> dict:
        return await self.request("PATCH", f"sessions/{session_id}", fields, retry_for=retry_for)

    @asynccontextmanager
    async def session(self, name: str, **fields):
        """As `Client.session`: `async with sb.session("import") as s:`."""
        fields.setdefault("status", "running")
        session = await self.create_session(name, **fields)
        try:
            yield session
        except SystemExit as error:
            if error.code not in (None, 0):
                await self._session_failed(session["id"], error)
                raise
            await self._end_session(session["id"], "completed")
            raise
        except BaseException as error:
            await self._session_failed(session["id"], error)
            raise
        await self._end_session(session["id"], "completed")

    async def _end_session(self, session_id, status: str) -> None:
        if (await self.get_session(session_id))["status"] not in ENDED:
            await self.update_session(session_id, status=status)

    async def _session_failed(self, session_id, error: BaseException) -> None:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        message = f"the session's block raised {type(error).__name__}: {error}\n{text}"
        message = storable(message)
        message = message[len(message) - fitting(message[::-1], MAX_TEXT - 1024) :]
        entry = {"level": "ERROR", "logger": "switchboard_client", "message": message}
        try:
            await self.log(session_id, [entry])
            await self._end_session(session_id, "failed")
        except SwitchboardError as failure:
            logger.warning(
                "switchboard_client: could not end session %s as failed: %s", session_id, failure
            )

    # Tasks
    async def create_task(
        self,
        session_id,
        name: str,
        external_id: str | None = None,
        stale_after: int | None = None,
        *,
        retry_for: float | None = None,
    ) -> dict:
        body: dict[str, Any] = {"name": name, "external_id": external_id or uuid.uuid4().hex}
        if stale_after is not None:
            body["stale_after"] = stale_after
        return await self.request("POST", f"sessions/{session_id}/tasks", body, retry_for=retry_for)

    async def get_task(self, task_id, *, retry_for: float | None = None) -> dict:
        return await self.request("GET", f"tasks/{task_id}", retry_for=retry_for)

    async def update_task(self, task_id, *, retry_for: float | None = None, **fields) -> dict:
        return await self.request("PATCH", f"tasks/{task_id}", fields, retry_for=retry_for)

    async def progress(
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
        return await self.request("PATCH", f"tasks/{task_id}", body, retry_for=retry_for)

    async def cancel_task(self, task_id, *, retry_for: float | None = None) -> dict:
        return await self.request("POST", f"tasks/{task_id}/cancel", {}, retry_for=retry_for)

    async def pause_task(self, task_id, *, retry_for: float | None = None) -> dict:
        """Ask the task's worker to hold: `{"task": ..., "changed": ...}`."""
        return await self.request("POST", f"tasks/{task_id}/pause", {}, retry_for=retry_for)

    async def resume_task(self, task_id, *, retry_for: float | None = None) -> dict:
        return await self.request("POST", f"tasks/{task_id}/resume", {}, retry_for=retry_for)

    async def wait_while_paused(self, task_id, poll: float = 1.0) -> dict:
        """As `Client.wait_while_paused`, without blocking the event loop."""
        while True:
            try:
                task = await self.get_task(task_id)
            except SwitchboardError as error:
                if not transient(error.status or 0):
                    raise
            else:
                if not task.get("pause_requested"):
                    return task
            await asyncio.sleep(poll)

    async def ask(
        self,
        task_id,
        prompt: str,
        choices: list[str] | None = None,
        default: str | None = None,
        timeout: float | None = None,
        *,
        retry_for: float | None = None,
    ) -> str | None:
        """As `Client.ask`, awaited: the answer, or `default` after `timeout`."""
        body = question_body(prompt, choices, default, timeout)
        path = f"tasks/{task_id}/questions"
        question = await self.request("POST", path, body, retry_for=retry_for)
        while question["status"] == "open":
            question = await self.request(
                "GET",
                f"questions/{question['id']}",
                params={"wait": Client.WAIT},
                timeout=self.timeout + Client.WAIT,
                retry_for=retry_for,
            )
        return question["answer"]

    async def output(
        self, task_id, chunk: str, final: bool = False, *, retry_for: float | None = None
    ) -> dict:
        body = {"chunk": chunk, "final": final, "uid": uuid.uuid4().hex}
        return await self.request("POST", f"tasks/{task_id}/output", body, retry_for=retry_for)

    async def status(self, task_id, status: str, message: str | None = None, **data) -> dict:
        body: dict[str, Any] = {"status": status, "data": data, "uid": uuid.uuid4().hex}
        if message is not None:
            body["message"] = message
        return await self.request("POST", f"tasks/{task_id}/output", body)

    @asynccontextmanager
    async def tool(self, task_id, tool: str, message: str | None = None, **args):
        """As `Client.tool`: `async with sb.tool(task_id, "search", q=...) as call:`."""
        call: dict[str, Any] = {}
        await self.status(task_id, "tool_calling", message, tool=tool, args=args)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            yield call
        except BaseException as error:
            await self.status(
                task_id,
                "tool_completed",
                tool=tool,
                seconds=round(loop.time() - started, 3),
                error=f"{type(error).__name__}: {error}",
            )
            raise
        await self.status(
            task_id,
            "tool_completed",
            tool=tool,
            seconds=round(loop.time() - started, 3),
            **({"result": call["result"]} if "result" in call else {}),
        )

    # Logs and events
    async def log(
        self,
        session_id,
        entries: list[dict],
        timeout: float | None = None,
        *,
        retry_for: float | None = None,
    ) -> dict:
        entries = [
            entry if entry.get("uid") else {**entry, "uid": uuid.uuid4().hex} for entry in entries
        ]
        body = {"entries": entries}
        return await self.request(
            "POST", f"sessions/{session_id}/logs", body, timeout=timeout, retry_for=retry_for
        )

    async def logs(self, session_id, **params) -> dict:
        return await self.request("GET", f"sessions/{session_id}/logs", params=params)

    async def events(self, channel: str | None = None, since: int = 0, **params) -> dict:
        return await self.request(
            "GET", "events", params={"channel": channel, "since": since, **params}
        )

"""Agent runs of the OpenAI Agents SDK, live in Switchboard.

    from agents import set_trace_processors
    from switchboard_client.agents import SwitchboardTracingProcessor

    set_trace_processors([SwitchboardTracingProcessor(session="support bot")])

(`set_trace_processors` also turns the SDK's hosted exporter off;
`add_trace_processor` keeps it.) Each trace, one `Runner.run`, is a task:
in the session whose id the trace's metadata names (`RunConfig(trace_metadata=
{"switchboard_session_id": 42})`), else the one of `session_id=`, else the
session named by `session=`, else a session per trace `group_id` (a
conversation), else a session of its own.
As the run goes:

- a model call is a `thinking` step when it ends, with the agent, the model
  and its token usage in `data`; while it waits the task's message says so;
- a function tool is `tool_calling` (its name and arguments) and then
  `tool_completed` (its output or its error, and the seconds it took);
- a handoff is a `handoff` step (`from`, `to`), a guardrail a `guardrail`
  step (`name`, `triggered`);
- the text a model answers is the task's output, as it comes;
- the task's `details` sum the tokens (`input_tokens`, `output_tokens`,
  `total_tokens`, `model_calls`);
- the run's end is a `completed` step and the task `completed` with the last
  answer as its result, or `failed` with the error that stopped it.

The processor never slows the agent down and never raises into it: the SDK's
callbacks only put what happened in a bounded queue, and one thread of its
own sends it (through a `Reporter` per session, so a few requests a second
carry it all, and an outage is ridden through). Needs the `openai-agents`
package (`pip install ./client[agents]`). A tool that needs a person's
approval asks it on the run's task: `run_with_approvals`
(switchboard_client.approvals).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from datetime import datetime
from typing import Any

from agents.tracing import TracingProcessor

from switchboard_client import Client, Reporter, SwitchboardError
from switchboard_client.approvals import run_with_approvals

__all__ = ["SwitchboardTracingProcessor", "run_with_approvals"]

logger = logging.getLogger(__name__)

TEXT_LIMIT = 1000  # characters of a tool's arguments or output kept in a step
TOKENS = ("input_tokens", "output_tokens", "total_tokens")


def _cut(value: Any, limit: int = TEXT_LIMIT) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _cut(repr(value), limit)


def _seconds(span) -> float | None:
    try:
        started = datetime.fromisoformat(span.started_at)
        ended = datetime.fromisoformat(span.ended_at)
    except (TypeError, ValueError):
        return None
    return round((ended - started).total_seconds(), 3)


def _error(span) -> str | None:
    error = getattr(span, "error", None)
    if not error:
        return None
    data = error.get("data") or {}
    detail = data.get("error")
    message = error.get("message") or "error"
    return f"{message}: {detail}" if detail else message


def _usage(usage) -> dict[str, int]:
    """Token counts from a usage object or dict (whichever names it uses)."""
    if usage is None:
        return {}
    get = usage.get if isinstance(usage, dict) else lambda name: getattr(usage, name, None)
    found = {
        "input_tokens": get("input_tokens") or get("prompt_tokens"),
        "output_tokens": get("output_tokens") or get("completion_tokens"),
        "total_tokens": get("total_tokens"),
    }
    found = {name: int(value) for name, value in found.items() if isinstance(value, (int, float))}
    if "total_tokens" not in found and found:
        found["total_tokens"] = found.get("input_tokens", 0) + found.get("output_tokens", 0)
    return found


def _texts(output) -> list[str]:
    """The assistant text in a model's output items (Responses or chat shape)."""
    texts = []
    for item in output or ():
        content = item.get("content") if isinstance(item, dict) else getattr(item, "content", None)
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or ():
            text = part.get("text") if isinstance(part, dict) else getattr(part, "text", None)
            if isinstance(text, str):
                texts.append(text)
    return texts


class _Run:
    """What the processor knows of one trace."""

    def __init__(self, task_id: str, session_id: str, own_session: bool) -> None:
        self.task_id = task_id
        self.session_id = session_id
        self.own_session = own_session
        self.tokens = dict.fromkeys(TOKENS, 0)
        self.model_calls = 0
        self.answer: str | None = None
        self.failure: str | None = None
        self.agent: str | None = None  # the agent at work now


class SwitchboardTracingProcessor(TracingProcessor):
    """A `TracingProcessor` that shows every agent run live (see the module)."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        session: str | None = None,
        session_id=None,
        stale_after: int | None = 600,
        max_pending: int = 10000,
    ) -> None:
        if client is None:
            url = url or os.environ.get("SWITCHBOARD_URL")
            token = token or os.environ.get("SWITCHBOARD_TOKEN")
            if not url or not token:
                raise ValueError("give a client, or url and token (or SWITCHBOARD_URL/_TOKEN)")
            client = Client(url, token)
        self.client = client
        self.session = session
        self.session_id = None if session_id is None else str(session_id)
        self.stale_after = stale_after
        self.dropped = 0
        self._sessions: dict[str, str] = {}  # external id: session id
        self._reporters: dict[str, Reporter] = {}
        self._runs: dict[str, _Run | None] = {}
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._idle = threading.Condition()
        self._busy = 0
        self._thread = threading.Thread(target=self._work, name="switchboard-agents", daemon=True)
        self._thread.start()

    # The SDK's callbacks: they only queue.
    def on_trace_start(self, trace) -> None:
        metadata = getattr(trace, "metadata", None) or {}
        self._put(
            self._trace_started,
            trace.trace_id,
            trace.name,
            getattr(trace, "group_id", None),
            metadata.get("switchboard_session_id"),
        )

    def on_trace_end(self, trace) -> None:
        self._put(self._trace_ended, trace.trace_id)

    def on_span_start(self, span) -> None:
        self._put(self._span_started, span)

    def on_span_end(self, span) -> None:
        self._put(self._span_ended, span)

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Wait until what was queued is handed on and sent; whether it was."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
            done = not self._busy
        for reporter in list(self._reporters.values()):
            done = reporter.flush(max(0.0, deadline - time.monotonic())) and done
        return done

    def task_of(self, trace_id: str, timeout: float = 10.0) -> str | None:
        """The id of the task that shows this trace, once what was queued
        is sent; None when it is not shown."""
        self.force_flush(timeout)
        run = self._runs.get(trace_id)
        return run.task_id if run is not None else None

    def note(self, trace_id: str, status: str, message: str | None = None, **data) -> None:
        """A step of the caller's on the trace's task, in order with the SDK's."""
        self._put(self._noted, trace_id, status, message, data)

    def shutdown(self, timeout: float = 10.0) -> None:
        self.force_flush(timeout)
        for reporter in list(self._reporters.values()):
            reporter.close(timeout)

    def _put(self, handler, *args) -> None:
        with self._idle:
            self._busy += 1
        try:
            self._queue.put_nowait((handler, args))
        except queue.Full:
            self.dropped += 1
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            if not self._busy:
                self._idle.notify_all()

    def _work(self) -> None:
        while True:
            handler, args = self._queue.get()
            try:
                handler(*args)
            except Exception:  # never let one event stop the ones after it
                logger.exception("switchboard_client.agents: could not report %s", handler.__name__)
            finally:
                self._done()

    # The thread's side.
    def _session_for(self, trace_id: str, name: str, group_id, chosen) -> tuple[str, bool]:
        if chosen is not None:
            return str(chosen), False
        if self.session_id is not None:
            return self.session_id, False
        if self.session is not None:
            external, name, own = f"agents-session:{self.session}", self.session, False
        elif group_id:
            external, name, own = f"agents-group:{group_id}", group_id, False
        else:
            external, own = f"agents-trace:{trace_id}", True
        if external not in self._sessions:
            made = self.client.create_session(name, external_id=external, status="running")
            self._sessions[external] = str(made["id"])
        return self._sessions[external], own

    def _reporter(self, session_id: str) -> Reporter:
        if session_id not in self._reporters:
            self._reporters[session_id] = Reporter(self.client, session_id)
        return self._reporters[session_id]

    def _trace_started(self, trace_id: str, name: str, group_id, chosen) -> None:
        try:
            session_id, own = self._session_for(trace_id, name or "agent run", group_id, chosen)
            task = self.client.create_task(
                session_id, name or "agent run", external_id=trace_id, stale_after=self.stale_after
            )
        except SwitchboardError as error:
            logger.warning("switchboard_client.agents: trace %s not shown: %s", trace_id, error)
            self._runs[trace_id] = None
            return
        run = _Run(str(task["id"]), session_id, own)
        self._runs[trace_id] = run
        self._reporter(session_id).report(run.task_id, status="running", message="started")

    def _noted(self, trace_id: str, status: str, message: str | None, data: dict) -> None:
        run = self._runs.get(trace_id)
        if run is not None:
            self._reporter(run.session_id).status(run.task_id, status, message, **data)

    def _run(self, span) -> tuple[_Run | None, Reporter | None]:
        run = self._runs.get(span.trace_id)
        if run is None:
            return None, None
        return run, self._reporter(run.session_id)

    def _span_started(self, span) -> None:
        run, report = self._run(span)
        if run is None:
            return
        data = span.span_data
        kind = data.type
        if kind == "agent":
            run.agent = data.name
            report.report(run.task_id, message=f"{data.name} is working")
        elif kind in ("response", "generation"):
            report.report(run.task_id, message=f"{run.agent or 'the agent'} is thinking")
        elif kind == "function":
            # The SDK sets the arguments just after the span starts, before the
            # tool runs; by the time this thread reads them they are there.
            report.status(
                run.task_id,
                "tool_calling",
                tool=data.name,
                args=_cut(data.input),
            )
            report.report(run.task_id, message=f"calling {data.name}")

    def _span_ended(self, span) -> None:
        run, report = self._run(span)
        if run is None:
            return
        data = span.span_data
        kind = data.type
        if kind in ("response", "generation"):
            self._model_call(run, report, span)
        elif kind == "function":
            error = _error(span)
            ended: dict[str, Any] = {"tool": data.name, "seconds": _seconds(span)}
            if error:
                ended["error"] = error
            else:
                ended["result"] = _cut(data.output)
            report.status(run.task_id, "tool_completed", **ended)
        elif kind == "handoff":
            to = data.to_agent
            report.status(
                run.task_id,
                "handoff",
                f"{data.from_agent} → {to}",
                **{"from": data.from_agent, "to": to},
            )
        elif kind == "guardrail":
            report.status(
                run.task_id, "guardrail", data.name, name=data.name, triggered=bool(data.triggered)
            )
        elif kind == "agent" and _error(span):
            run.failure = f"{data.name}: {_error(span)}"
        elif kind == "custom" and span.parent_id is None:
            # The SDK's whole-run span: its usage is the run's total.
            usage = _usage((getattr(data, "data", None) or {}).get("usage"))
            if usage:
                run.tokens.update(usage)
                report.report(run.task_id, details=self._details(run))
            if _error(span):
                run.failure = _error(span)

    def _model_call(self, run: _Run, report: Reporter, span) -> None:
        data = span.span_data
        response = getattr(data, "response", None)
        model = getattr(response, "model", None) or getattr(data, "model", None)
        usage = _usage(getattr(response, "usage", None) or getattr(data, "usage", None))
        output = getattr(response, "output", None) or getattr(data, "output", None)
        run.model_calls += 1
        for name, value in usage.items():
            run.tokens[name] += value
        step: dict[str, Any] = {"agent": run.agent, "model": model, **usage}
        step["seconds"] = _seconds(span)
        if _error(span):
            step["error"] = _error(span)
        report.status(run.task_id, "thinking", step["agent"], **step)
        texts = [text for text in _texts(output) if text]
        if texts:
            run.answer = "\n".join(texts)
            report.output(run.task_id, run.answer + "\n")
        report.report(run.task_id, details=self._details(run))

    def _details(self, run: _Run) -> dict[str, int]:
        return {**run.tokens, "model_calls": run.model_calls}

    def _trace_ended(self, trace_id: str) -> None:
        run = self._runs.pop(trace_id, None)
        if run is None:
            return
        report = self._reporter(run.session_id)
        if run.failure:
            report.status(run.task_id, "failed", run.failure)
            # The steps first: a report goes before the steps of its request.
            report.flush()
            report.report(run.task_id, status="failed", error=run.failure, message="failed")
        else:
            report.status(run.task_id, "completed", output=_cut(run.answer))
            report.flush()
            report.report(run.task_id, status="completed", result=run.answer, message="completed")
        report.report(run.task_id, details=self._details(run))
        if not any(other and other.session_id == run.session_id for other in self._runs.values()):
            # No run of the session is under way: its reporter's thread ends.
            self._reporters.pop(run.session_id, None)
            report.close()
        if run.own_session:
            try:
                self.client.update_session(
                    run.session_id, status="failed" if run.failure else "completed"
                )
            except SwitchboardError as error:
                logger.warning(
                    "switchboard_client.agents: session %s not ended: %s", run.session_id, error
                )

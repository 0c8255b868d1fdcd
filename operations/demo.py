"""Demo jobs that report to a running server over the HTTP API, as real workers do."""

import asyncio
import logging
import random
import sys
import threading
from pathlib import Path

from django.conf import settings

sys.path.insert(0, str(Path(settings.BASE_DIR) / "client"))
from switchboard_client import Client, LogHandler, SwitchboardError  # noqa: E402

log = logging.getLogger("switchboard.demo")

SDK_RUN: list[str] = []

# The first jobs run in this order, so a newcomer sees an agent run and
# terminal output at once; then they are picked at random.
JOBS = [
    ("agent run: answer a question", ["answer"]),
    # The real OpenAI Agents SDK with a scripted model (operations/agent_demo.py):
    # its one task is the run, made by the SDK's trace processor.
    ("agent run: support bot (Agents SDK)", SDK_RUN),
    ("model evaluation", ["load checkpoint", "eval: reasoning", "eval: coding", "report"]),
    ("nightly ETL", ["extract orders", "extract customers", "transform", "load warehouse"]),
    ("agent run: triage inbox", ["read mail", "classify", "draft replies", "summarize"]),
    ("backup", ["snapshot db", "compress", "upload", "verify"]),
]
LINES = [
    (logging.INFO, "processed batch {n} ({rows} rows)"),
    (logging.DEBUG, "cache hit ratio {ratio:.2f}"),
    (logging.INFO, "GET /api/items?page={n} 200 in {ms} ms"),
    (logging.WARNING, "slow query took {ms} ms"),
    (logging.ERROR, "retrying after timeout talking to upstream (attempt {attempt})"),
]
# What an agent's steps log (the triage inbox run), not a data job's lines.
AGENT_STEPS = {"read mail", "classify", "draft replies", "summarize"}
AGENT_LINES = [
    (logging.INFO, "read message {n} of the inbox ({rows} characters)"),
    (logging.DEBUG, "classifier confidence {ratio:.2f}"),
    (logging.INFO, "model call returned in {ms} ms"),
    (logging.WARNING, "message {n} is long; summarizing it first"),
    (logging.ERROR, "model rate limited; retrying (attempt {attempt})"),
]
TOKENS = [
    "Reading",
    "the",
    "request.",
    "Thinking",
    "about",
    "the",
    "plan.",
    "Calling",
    "tool",
    "search().",
    "Done.",
]
ANSWER = (
    "Yesterday's nightly ETL failed because the orders extract timed out talking to the "
    "warehouse. The retry at 02:10 succeeded, so the data is complete; the load step ran "
    "41 minutes late. Two dashboards showed stale numbers until 03:00. To avoid a repeat, "
    "raise the extract timeout from 30 s to 120 s and alert when a retry is needed."
)
GREEN, RED, DIM, RESET = "\x1b[32m", "\x1b[1;31m", "\x1b[2m", "\x1b[0m"


class Cancelled(Exception):
    """Someone pressed cancel."""


class DemoJobs:
    """Keeps `parallel` demo sessions running, forever, until stopped."""

    def __init__(self, base_url: str, token: str, parallel: int = 3, pace: float = 1.0) -> None:
        self.client = Client(base_url, token, timeout=10)
        self.base_url, self.token = base_url, token
        self.parallel = parallel
        self.pace = pace
        self.stop = threading.Event()
        self.count = 0
        self.lock = threading.Lock()
        self.sessions: list[str] = []

    def finish(self) -> int:
        """Stop the jobs and end their sessions that are still going as
        cancelled (their workers are gone); returns how many."""
        from live.errors import Refused
        from sessions_app import services
        from sessions_app.models import TERMINAL, Session

        self.stop.set()
        ended = 0
        for session_id in self.sessions:
            session = Session.objects.filter(pk=session_id).first()
            if session is None or session.is_terminal:
                continue
            for task in session.tasks.exclude(status__in=TERMINAL):
                try:
                    services.update_task(task.pk, status="cancelled", message="the demo stopped")
                except Refused:
                    pass  # it ended meanwhile
            services.cancel_session(session.pk)
            ended += 1
        return ended

    def start(self) -> None:
        for index in range(self.parallel):
            threading.Thread(target=self.loop, args=(index,), daemon=True).start()

    def loop(self, index: int) -> None:
        self.stop.wait(1.0 + index * 2.0)
        while not self.stop.is_set():
            try:
                self.run_one()
            except SwitchboardError as error:
                log.debug("demo job paused: %s", error)
                self.stop.wait(2.0)

    def sleep(self, seconds: float) -> None:
        self.stop.wait(seconds / self.pace)

    def run_one(self) -> None:
        with self.lock:
            self.count += 1
            number = self.count
        title, steps = JOBS[number - 1] if number <= len(JOBS) else random.choice(JOBS)
        session = self.client.create_session(
            f"{title} #{number}", metadata={"demo": True, "host": f"worker-{number % 4 + 1}"}
        )
        self.sessions.append(session["id"])
        self.client.update_session(session["id"], status="running")
        handler = LogHandler(self.base_url, self.token, session["id"], interval=0.3)
        failed = steps is SDK_RUN and self.run_sdk(session["id"]) == "failed"
        for step in steps:
            if self.stop.is_set():
                break
            task = self.client.create_task(session["id"], step)
            handler.task_id = task["id"]
            outcome = self.run_task(task, handler)
            failed = failed or outcome == "failed"
        handler.close()
        status = "failed" if failed else "completed"
        self.client.update_session(session["id"], status=status)
        self.sleep(3.0)

    def run_sdk(self, session_id) -> str:
        from operations import agent_demo

        async def pause(seconds: float) -> None:
            if self.stop.is_set():
                raise Cancelled
            await asyncio.sleep(seconds / self.pace)

        wait = max(1.0, 45.0 / self.pace)  # for someone to approve the return
        return agent_demo.run(self.base_url, self.token, session_id, pause, wait)

    def run_task(self, task: dict, handler: LogHandler) -> str:
        task_id = task["id"]
        self.client.update_task(task_id, status="running", message="starting")
        try:
            if task["name"] == "answer":
                return self.run_agent(task_id, handler)
            if task["name"].startswith("eval:"):
                return self.run_eval(task_id)
        except Cancelled:
            self.client.update_task(task_id, status="cancelled", message="stopped on request")
            return "cancelled"
        return self.run_steps(task, handler)

    def checkpoint(self, task_id, progress: float, **fields) -> None:
        reply = self.client.progress(task_id, progress, **fields)
        if reply.get("cancel_requested") or self.stop.is_set():
            raise Cancelled

    def run_agent(self, task_id, handler: LogHandler) -> str:
        """An agent run: thinking, two tool calls (the second times out once
        and is retried), then a streamed answer."""
        logger = logging.getLogger("demo.agent")
        logger.propagate, logger.handlers = False, [handler]
        logger.setLevel(logging.INFO)
        say = self.client.status
        say(task_id, "thinking", "reading the question and planning")
        self.sleep(1.5)
        self.checkpoint(task_id, 10)
        with self.client.tool(task_id, "search", q="nightly ETL failure yesterday") as call:
            self.sleep(1.2)
            call["result"] = {"hits": 3, "top": "runbook: ETL timeouts"}
        logger.info("search returned 3 hits")
        self.checkpoint(task_id, 30)
        for attempt in (1, 2):
            try:
                with self.client.tool(
                    task_id,
                    "fetch_logs",
                    job="nightly ETL",
                    since="yesterday 00:00",
                    attempt=attempt,
                ) as call:
                    self.sleep(1.5)
                    if attempt == 1:
                        raise TimeoutError("the log store did not answer within 5 s")
                    call["result"] = {"lines": 1840, "errors": 2}
                break
            except TimeoutError:
                logger.warning("fetch_logs timed out; retrying")
                say(task_id, "thinking", "the log store was slow; trying once more")
                self.sleep(0.8)
        self.checkpoint(task_id, 60)
        say(task_id, "thinking", "writing the answer")
        words = ANSWER.split(" ")
        for index, word in enumerate(words):
            self.client.output(task_id, word + " ")
            self.sleep(random.uniform(0.03, 0.09))
            if index % 10 == 9:
                self.checkpoint(task_id, 60 + 40 * index / len(words))
        self.client.output(task_id, "", final=True)
        say(task_id, "completed", "answered", tokens=len(words))
        self.client.update_task(
            task_id, status="completed", message="answered", result={"words": len(words)}
        )
        return "completed"

    def run_eval(self, task_id) -> str:
        """An evaluation that prints as a terminal does: a tqdm bar on one
        line (carriage returns) and coloured results."""
        cases, width = 40, 20
        out = self.client.output
        out(task_id, f"{DIM}loading cases…{RESET}\n")
        passed = 0
        for done in range(1, cases + 1):
            self.sleep(random.uniform(0.1, 0.3))
            passed += random.random() < 0.85
            filled = width * done // cases
            bar = "█" * filled + " " * (width - filled)
            out(task_id, f"\r{done * 100 // cases:3d}%|{bar}| {done}/{cases} [{passed} passed]")
            if done % 5 == 0:
                self.checkpoint(task_id, 100 * done / cases, message=f"{done}/{cases} cases")
        out(task_id, "\n")
        failed = cases - passed
        verdict = f"{GREEN}PASS{RESET}" if failed <= 6 else f"{RED}FAIL{RESET}"
        out(task_id, f"{verdict} {passed}/{cases} passed, {failed} failed\n", final=True)
        self.client.update_task(
            task_id,
            status="completed",
            message=f"{passed}/{cases} passed",
            result={"passed": passed},
        )
        return "completed"

    def run_steps(self, task: dict, handler: LogHandler) -> str:
        task_id = task["id"]
        fail_at = random.uniform(30, 90) if random.random() < 0.12 else None
        streams = "agent" in task["name"] or "draft" in task["name"] or "summarize" in task["name"]
        progress = 0.0
        words = iter(TOKENS * 3)
        logger = logging.getLogger(f"demo.{task['name'].split(':')[0].replace(' ', '_')}")
        logger.propagate = False
        logger.handlers = [handler]
        logger.setLevel(logging.DEBUG)
        while progress < 100:
            self.sleep(random.uniform(0.2, 0.5))
            progress = min(100.0, round(progress + random.uniform(1.5, 6.0), 1))
            reply = self.client.progress(
                task_id, progress, message=f"{progress:.1f}% done", details={"step": int(progress)}
            )
            level, text = random.choice(AGENT_LINES if task["name"] in AGENT_STEPS else LINES)
            logger.log(
                level,
                text.format(
                    n=int(progress),
                    rows=random.randint(100, 5000),
                    ratio=random.random(),
                    ms=random.randint(5, 900),
                    attempt=random.randint(1, 3),
                ),
            )
            if streams:
                word = next(words, None)
                if word is not None:
                    self.client.output(task_id, word + " ")
            if reply.get("cancel_requested"):
                logger.warning("cancel requested; stopping")
                self.client.update_task(task_id, status="cancelled", message="stopped on request")
                return "cancelled"
            if fail_at is not None and progress >= fail_at:
                try:
                    raise ConnectionError("upstream closed the connection")
                except ConnectionError:
                    logger.exception("step failed")
                self.client.update_task(
                    task_id,
                    status="failed",
                    error="ConnectionError: upstream closed the connection",
                )
                return "failed"
        if streams:
            self.client.output(task_id, "", final=True)
        self.client.update_task(task_id, status="completed", message="done", result={"ok": True})
        return "completed"

"""Demo jobs that report to a running server over the HTTP API, as real workers do."""

import logging
import random
import sys
import threading
from pathlib import Path

from django.conf import settings

sys.path.insert(0, str(Path(settings.BASE_DIR) / "client"))
from switchboard_client import Client, LogHandler, SwitchboardError  # noqa: E402

log = logging.getLogger("switchboard.demo")

JOBS = [
    ("nightly ETL", ["extract orders", "extract customers", "transform", "load warehouse"]),
    ("agent run: triage inbox", ["read mail", "classify", "draft replies", "summarize"]),
    ("model evaluation", ["load checkpoint", "eval: reasoning", "eval: coding", "report"]),
    ("backup", ["snapshot db", "compress", "upload", "verify"]),
]
LINES = [
    (logging.INFO, "processed batch {n} ({rows} rows)"),
    (logging.DEBUG, "cache hit ratio {ratio:.2f}"),
    (logging.INFO, "GET /api/items?page={n} 200 in {ms} ms"),
    (logging.WARNING, "slow query took {ms} ms"),
    (logging.ERROR, "retrying after timeout talking to upstream (attempt {attempt})"),
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
                except services.ServiceError:
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
        title, steps = random.choice(JOBS)
        session = self.client.create_session(
            f"{title} #{number}", metadata={"demo": True, "host": f"worker-{number % 4 + 1}"}
        )
        self.sessions.append(session["id"])
        self.client.update_session(session["id"], status="running")
        handler = LogHandler(self.base_url, self.token, session["id"], interval=0.3)
        failed = False
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

    def run_task(self, task: dict, handler: LogHandler) -> str:
        task_id = task["id"]
        self.client.update_task(task_id, status="running", message="starting")
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
            level, text = random.choice(LINES)
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

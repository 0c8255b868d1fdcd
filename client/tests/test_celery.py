"""A real Celery worker (Redis as the broker) against a real server: every
task it runs is a Switchboard task, live, from Celery's signals alone."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from celery import Celery, chain
from websockets.sync.client import connect as ws_connect

from conftest import ROOT
from live.models import Event
from logs_app.models import LogEntry
from sessions_app.models import Session, Task

pytestmark = pytest.mark.timeout(120)

POOL = os.environ.get("SWITCHBOARD_CELERY_POOL", "solo")  # or prefork
BROKER = os.environ.get("SWITCHBOARD_CELERY_BROKER", "redis://127.0.0.1:6379/9")


@pytest.fixture(scope="module")
def broker():
    host, port = BROKER.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        socket.create_connection((host, int(port)), 2).close()
    except OSError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is needed at {host}:{port} as the Celery broker")
        pytest.skip(f"no Redis at {host}:{port} for the Celery broker")
    return BROKER


class Worker:
    """`celery -A tests.celery_tasks worker` on a queue of its own (`app`,
    `pool` and `concurrency` to choose; `backend`: where results go, for
    canvases that wait on them)."""

    def __init__(
        self,
        server,
        token: str,
        app: str = "tests.celery_tasks",
        pool: str = POOL,
        concurrency: int = 2,
        backend: str | None = None,
        **env: str,
    ) -> None:
        self.queue = f"sbtest-{uuid.uuid4().hex[:8]}"
        self.log = Path(ROOT / f".celery-{self.queue}.log")
        self.sender = Celery("sender", broker=BROKER, backend=backend)
        self.sender.conf.task_default_queue = self.queue
        env = {
            **os.environ,
            "SWITCHBOARD_URL": server.url,
            "SWITCHBOARD_TOKEN": token,
            "CELERY_BROKER": BROKER,
            "CELERY_QUEUE": self.queue,
            "PYTHONPATH": str(ROOT / "client"),
            **env,
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)  # a worker of its own, not of this project
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, "worker",
             f"--pool={pool}", "-c", str(concurrency), "-l", "info", "-n", f"{self.queue}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT / "client", env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait(lambda: "ready." in self.logs(), 30, self.logs)
        except AssertionError:
            self.stop()
            raise

    def send(self, name: str, *args, **options):
        return self.sender.signature(name, args).apply_async(**options)

    def sig(self, name: str, *args):
        return self.sender.signature(name, args, queue=self.queue)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.unlink(missing_ok=True)


@pytest.fixture
def worker(broker, fresh_server, admin_token):
    started = []

    def start(**env) -> tuple:
        srv = fresh_server(**{"SWITCHBOARD_SESSION_SETTLE": "2", **env})
        one = Worker(srv, admin_token, **{k: v for k, v in env.items() if k.startswith("SB_")})
        started.append(one)
        return srv, one

    yield start
    for one in started:
        one.stop()


def wait(predicate, timeout: float = 20, said=lambda: ""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {said()[-3000:]}")


def ended(api, celery_id: str) -> dict | None:
    found = api.request("GET", "tasks", params={"external_id": celery_id})["results"]
    if found and found[0]["status"] in ("completed", "failed", "cancelled"):
        return found[0]
    return None


def session_of(api, external_id: str) -> dict:
    (found,) = api.request("GET", "sessions", params={"external_id": external_id})["results"]
    return found


def updates(task_id) -> list[tuple]:
    events = Event.objects.filter(kind="task.update", task_id=task_id).order_by("id")
    return [(e.data["status"], e.data["attempt"], e.data["error"]) for e in events]


@pytest.fixture
def sockets():
    """Opens sockets, closed after the test."""
    with ExitStack() as stack:
        yield lambda url, headers: stack.enter_context(ws_connect(url, additional_headers=headers))


def test_tasks_that_succeed_raise_retry_and_chain_are_live_sessions_and_tasks(
    worker, admin_token, sockets
):
    srv, celery = worker()
    api = srv.client(admin_token)
    bearer = {"Authorization": f"Bearer {admin_token}"}
    ws = sockets(srv.ws_url, bearer)
    ws.send(json.dumps({"action": "subscribe", "channel": "tasks"}))
    since = json.loads(ws.recv(10))["seq"]

    work = celery.send("sbtest.work", 3)
    broken = celery.send("sbtest.broken")
    flaky = celery.send("sbtest.flaky")
    odd = celery.send("sbtest.odd")
    steps = chain(*(celery.sender.signature("sbtest.add", (1,)) for _ in range(3)))
    steps.set(queue=celery.queue)
    last = steps.apply_async()
    ids = [last.parent.parent.id, last.parent.id, last.id]

    done = wait(lambda: ended(api, work.id), 30, celery.logs)
    assert done["status"] == "completed" and done["result"] == {"rows": 3}
    assert done["progress"] == 100 and done["message"] == "3 of 3 rows"
    session = session_of(api, work.id)
    assert session["name"] == "sbtest.work" and session["id"] == done["session_id"]
    lines = LogEntry.objects.filter(session_id=session["id"], message__startswith="row ")
    assert [(e.message, str(e.task_id)) for e in lines.order_by("id")] == [
        (f"row {n} done", done["id"]) for n in range(3)
    ]
    wait(lambda: Session.objects.get(pk=session["id"]).status == "completed")

    failed = wait(lambda: ended(api, broken.id), 30, celery.logs)
    assert failed["status"] == "failed" and failed["error"] == "ValueError: bad input"
    (trace,) = LogEntry.objects.filter(session_id=failed["session_id"], level=40)
    assert trace.message.startswith("Traceback") and "ValueError: bad input" in trace.message
    assert str(trace.task_id) == failed["id"]
    wait(lambda: Session.objects.get(pk=failed["session_id"]).status == "failed")

    retried = wait(lambda: (t := ended(api, flaky.id)) and t["attempt"] == 2 and t, 30, celery.logs)
    assert (retried["status"], retried["attempt"], retried["result"]) == ("completed", 2, "fine")
    history = updates(retried["id"])
    assert ("failed", 1) in [(s, a) for s, a, _ in history]
    reason = next(e for s, a, e in history if s == "failed")
    assert reason.startswith("retry: Retry in") and "try later" in reason
    assert history[-1][:2] == ("completed", 2)
    assert ("running", 2, "") in history

    assert wait(lambda: ended(api, odd.id))["result"].startswith("<object object at")

    results = [wait(lambda i=i: ended(api, i), 30, celery.logs) for i in ids]
    assert [t["result"] for t in results] == [2, 3, 4]
    assert {t["session_id"] for t in results} == {session_of(api, ids[0])["id"]}
    chained = session_of(api, ids[0])
    assert chained["name"] == "sbtest.add" and chained["total_tasks"] == 3
    wait(lambda: Session.objects.get(pk=chained["id"]).status == "completed", 20)

    # Live on the socket, then the same on resume.
    final = {t["id"]: t["status"] for t in [done, failed, retried, *results]}

    def seen(frames):
        latest = {}
        for frame in frames:
            if frame.get("event") == "task.update":
                latest[frame["data"]["id"]] = frame["data"]["status"]
        return latest

    frames = []
    wait(lambda: frames.append(json.loads(ws.recv(10))) or seen(frames).items() >= final.items())
    ws.close()
    again = sockets(srv.ws_url, bearer)
    again.send(json.dumps({"action": "subscribe", "channel": "tasks", "since": since}))
    assert json.loads(again.recv(10))["type"] == "subscribed"
    resumed = []
    wait(lambda: resumed.append(json.loads(again.recv(10))) or len(resumed) >= len(frames))
    assert [f["seq"] for f in resumed[: len(frames)]] == [f["seq"] for f in frames]


def test_a_task_revoked_or_cancelled_before_it_starts_never_runs(worker, admin_token):
    srv, celery = worker()
    api = srv.client(admin_token)
    revoked = celery.send("sbtest.sleepy", 1, countdown=2)
    pressed = celery.send("sbtest.sleepy", 1, countdown=2)
    (waiting,) = wait(
        lambda: api.request("GET", "tasks", params={"external_id": pressed.id})["results"]
    )
    assert waiting["status"] == "pending"
    celery.sender.control.revoke(revoked.id)
    api.cancel_task(waiting["id"])  # Cancel pressed in the pages
    running = celery.send("sbtest.sleepy", 30)
    started = wait(lambda: Task.objects.filter(external_id=running.id, status="running").first())
    api.cancel_task(started.pk)  # running: asked to stop, and it does
    stopped = wait(lambda: ended(api, running.id), 20, celery.logs)
    assert stopped["status"] == "cancelled"
    for celery_id in (revoked.id, pressed.id):
        task = wait(lambda i=celery_id: ended(api, i), 20, celery.logs)
        assert task["status"] == "cancelled"
        assert "running" not in [s for s, _, _ in updates(task["id"])]
    marker = celery.send("sbtest.add", 1)  # after the countdowns: they would have run by now
    wait(lambda: ended(api, marker.id), 20, celery.logs)
    assert "Discarding revoked task" in celery.logs()
    sleeping = LogEntry.objects.filter(message="sleeping").values_list("task_id", flat=True)
    assert list(sleeping) == [started.pk]
    assert not LogEntry.objects.filter(message__startswith="switchboard:").exists()


def test_a_worker_killed_mid_task_leaves_its_task_to_be_found_lost(worker, admin_token):
    srv, celery = worker(SB_STALE_AFTER="2")
    api = srv.client(admin_token)
    sleepy = celery.send("sbtest.sleepy", 60)
    task = wait(lambda: Task.objects.filter(external_id=sleepy.id, status="running").first())
    assert task.stale_after == 2
    time.sleep(2.5)  # kept alive past its stale_after while the worker lives
    assert Task.objects.get(pk=task.pk).status == "running"
    os.kill(celery.process.pid, signal.SIGKILL)
    lost = wait(lambda: ended(api, sleepy.id), 20)
    assert lost["status"] == "failed" and lost["lost"] is True
    assert lost["error"].startswith("no report for 2 s")


def test_a_session_callable_puts_the_tasks_of_a_worker_in_one_session(worker, admin_token):
    srv, celery = worker(SB_SESSION="per_worker", SWITCHBOARD_SESSION_SETTLE="0")
    api = srv.client(admin_token)
    first, second = celery.send("sbtest.add", 1), celery.send("sbtest.add", 2)
    tasks = [wait(lambda i=i: ended(api, i), 30, celery.logs) for i in (first.id, second.id)]
    assert [t["result"] for t in tasks] == [2, 3]
    (session,) = Session.objects.filter(pk__in=[t["session_id"] for t in tasks])
    assert session.external_id == f"celery:{celery.queue}@{socket.gethostname()}"
    assert session.name == f"worker {celery.queue}@{socket.gethostname()}"
    assert session.status == "running"  # a lone task does not end a session of many

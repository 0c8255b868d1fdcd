"""A Celery group and a chord on a real worker (Redis as the broker and the
result backend) against a real server: each canvas is one session, its
external_id the root's id, with a task for each Celery task."""

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery, chord, group

from conftest import ROOT

pytestmark = pytest.mark.timeout(120)

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


def wait(predicate, timeout: float = 30, said=lambda: ""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {said()[-3000:]}")


class Worker:
    """`celery -A tests.celery_canvas_tasks worker` on a queue of its own."""

    def __init__(self, server, token: str) -> None:
        self.queue = f"sbcanvas-{uuid.uuid4().hex[:8]}"
        self.log = Path(ROOT / f".celery-{self.queue}.log")
        self.sender = Celery("sender", broker=BROKER, backend=BROKER)
        self.sender.conf.task_default_queue = self.queue
        env = {
            **os.environ,
            "SWITCHBOARD_URL": server.url,
            "SWITCHBOARD_TOKEN": token,
            "CELERY_BROKER": BROKER,
            "CELERY_QUEUE": self.queue,
            "PYTHONPATH": str(ROOT / "client"),
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)  # a worker of its own, not of this project
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_canvas_tasks", "worker",
             "--pool=solo", "-l", "info", "-n", f"{self.queue}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT / "client", env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait(lambda: "ready." in self.logs(), 30, self.logs)
        except AssertionError:
            self.stop()
            raise

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
def celery(broker, fresh_server, admin_token):
    srv = fresh_server(SWITCHBOARD_SESSION_SETTLE="2")
    worker = Worker(srv, admin_token)
    yield srv, worker
    worker.stop()


def ended(api, celery_id: str) -> dict | None:
    found = api.request("GET", "tasks", params={"external_id": celery_id})["results"]
    if found and found[0]["status"] in ("completed", "failed", "cancelled"):
        return found[0]
    return None


def placed(api, tasks: list[dict]) -> str:
    """Which session (by its external_id) each task went to, for the failure's message."""
    keys = {t["session_id"]: api.get_session(t["session_id"])["external_id"] for t in tasks}
    return "; ".join(f"task {t['external_id']} in session {keys[t['session_id']]}" for t in tasks)


# Seen on Celery 5.7: a group or chord applied by a client (not from inside
# a task) gives its tasks no root_id, so each header task is a session of its
# own, keyed by its own id, and a chord's body, sent from the last header
# task to end, joins that task's session. Strict: these pass once connect()
# keys a canvas by its root.


def test_a_group_is_one_session_keyed_by_its_root(celery, admin_token):
    srv, worker = celery
    api = srv.client(admin_token)
    result = group(worker.sig("sbcanvas.square", n) for n in (1, 2, 3)).apply_async()
    ids = [child.id for child in result.results]
    assert result.get(timeout=30) == [1, 4, 9]
    tasks = [wait(lambda i=i: ended(api, i), 30, worker.logs) for i in ids]
    assert [t["result"] for t in tasks] == [1, 4, 9]
    assert len({t["session_id"] for t in tasks}) == 1, placed(api, tasks)
    session = api.get_session(tasks[0]["session_id"])
    # The root: the group's first task (as a chain's), or the group itself.
    assert session["external_id"] in (ids[0], result.id)
    assert (session["name"], session["total_tasks"]) == ("sbcanvas.square", 3)
    wait(lambda: api.get_session(session["id"])["status"] == "completed")


def test_a_chord_is_one_session_keyed_by_its_root(celery, admin_token):
    srv, worker = celery
    api = srv.client(admin_token)
    header = [worker.sig("sbcanvas.square", n) for n in (1, 2, 3)]
    result = chord(header)(worker.sig("sbcanvas.total"))
    assert result.get(timeout=30) == 14
    ids = [child.id for child in result.parent.results] + [result.id]
    tasks = [wait(lambda i=i: ended(api, i), 30, worker.logs) for i in ids]
    assert [t["result"] for t in tasks] == [1, 4, 9, 14]
    assert len({t["session_id"] for t in tasks}) == 1, placed(api, tasks)
    session = api.get_session(tasks[0]["session_id"])
    assert session["external_id"] in (ids[0], result.parent.id)
    assert session["total_tasks"] == 4
    wait(lambda: api.get_session(session["id"])["status"] == "completed")

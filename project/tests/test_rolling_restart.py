"""A rolling restart as docs/DEPLOY.md does it (SIGTERM one process, wait for
it to exit, start it again, wait for its /readyz, then the next), with two
real daphne processes behind a real nginx running the shipped site, while
clients keep writing through nginx: no request fails, and every write that
was answered 2xx is stored."""

import json
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from logs_app.models import LogEntry
from project.tests.test_deploy import Nginx, nginx_binary

pytestmark = pytest.mark.timeout(120)

WRITERS = 4


class Writers:
    """Threads that PATCH a task's progress and POST log lines with a uid,
    through nginx, without retries, until told to stop."""

    def __init__(self, url: str, token: str, session_id: int, task_id: int) -> None:
        self.url, self.token = url, token
        self.session_id, self.task_id = session_id, task_id
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: dict[int, int] = {}
        self.failures: list[str] = []
        self.stored_uids: list[str] = []
        self.threads = [threading.Thread(target=self.write, daemon=True) for _ in range(WRITERS)]

    def send(self, method: str, path: str, body: dict) -> int:
        request = urllib.request.Request(
            f"{self.url}/api/v1/{path}", data=json.dumps(body).encode(), method=method,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            error.read()
            return error.code

    def write(self) -> None:
        n = 0
        while not self.stop.is_set() and n < 5000:
            n += 1
            uid = uuid.uuid4().hex
            try:
                if n % 2:
                    status = self.send("PATCH", f"tasks/{self.task_id}", {"progress": n % 100})
                else:
                    entry = {"message": f"line {n}", "uid": uid}
                    status = self.send(
                        "POST", f"sessions/{self.session_id}/logs", {"entries": [entry]}
                    )
            except OSError as error:
                with self.lock:
                    self.failures.append(f"{type(error).__name__}: {error}")
                continue
            with self.lock:
                self.answers[status] = self.answers.get(status, 0) + 1
                if n % 2 == 0 and 200 <= status < 300:
                    self.stored_uids.append(uid)
            time.sleep(0.005)

    def __enter__(self) -> "Writers":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def ready(srv, timeout: float = 30) -> None:
    """DEPLOY.md's `until curl -fsS …/readyz`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{srv.url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{srv.url}/readyz never answered 200: {srv.logs()[-2000:]}")


def rolling_restart(servers) -> None:
    for srv in servers:
        srv.process.send_signal(signal.SIGTERM)  # what systemctl restart sends
        srv.process.wait(30)
        srv.start()
        ready(srv)


def test_a_rolling_restart_behind_nginx_fails_no_request_and_loses_no_write(
    fresh_server, admin_token
):
    nginx_binary()
    servers = [fresh_server(), fresh_server()]
    nginx = Nginx([s.port for s in servers])
    checked = nginx.check()
    assert checked.returncode == 0, checked.stderr
    nginx.start()
    try:
        client = servers[0].client(admin_token)
        session = client.create_session("rolling")
        task = client.create_task(session["id"], "work")
        for srv in servers:
            ready(srv)
        with Writers(nginx.url, admin_token, session["id"], task["id"]) as writers:
            time.sleep(1)
            rolling_restart(servers)
            time.sleep(1)
    finally:
        errors = nginx.errors()
        nginx.stop()

    answered = sum(writers.answers.values())
    assert answered > 50, writers.answers  # the clients wrote throughout
    assert writers.failures == [], writers.failures[:5]
    failed = {status: n for status, n in writers.answers.items() if status >= 300}
    assert failed == {}, (writers.answers, errors)
    stored = LogEntry.objects.filter(session_id=session["id"], uid__in=writers.stored_uids)
    assert stored.count() == len(writers.stored_uids)

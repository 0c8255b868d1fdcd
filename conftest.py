"""Fixtures shared by every test module: users, tokens, a real daphne server."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "client"))

from switchboard_client import Client  # noqa: E402


def pytest_configure(config):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Tests run database work in many threads; none may keep a connection past
    # its work, or the test database cannot be dropped at the end.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The test process is no server: its threads open and close their own
    # connections (the servers it starts use the pool, as in production).
    settings.DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
    # In-process requests (Django's test client) do their database work on the
    # test's own thread, inside its transaction; the servers it starts use the
    # database threads, as in production.
    settings.SWITCHBOARD["DB_THREADS"] = 0


@pytest.fixture(autouse=True)
def _close_the_sync_thread_connections():
    """After each test, close the connections of asgiref's one thread for
    thread-sensitive sync work. channels' test communicators turn off
    database_sync_to_async's closing while they pass messages, so work the
    application does meanwhile (the process's figures, a resume) leaves its
    connection open there, and the test database then cannot be dropped."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture(autouse=True)
def _one_process_per_test():
    """After each test, end what an in-process server started and what its
    event loop kept. A test that calls the ASGI application starts the
    outbox deliverer as a server would (publisher.on_serve); left running it
    reads the database across the next tests' flushes. And the channel layer
    keeps per-channel locks on the loop that used them (channels-redis names
    every hub's channel after the layer, not the loop), so each test's loop
    gets a layer of its own."""
    yield
    from channels.layers import channel_layers

    from operations.outbox import deliverer

    deliverer.stop()
    channel_layers.backends.clear()


def pytest_report_header(config):
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    return f"switchboard: database {settings.DATABASES['default']['ENGINE']}, layer {layer}"


# --- identities -----------------------------------------------------------------------


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")


@pytest.fixture
def worker_user(django_user_model):
    """A plain user: sees and changes only the sessions it created."""
    return django_user_model.objects.create_user("worker", "worker@example.com", "pw")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("other", "other@example.com", "pw")


def post(http, path: str, body) -> tuple[int, dict]:
    """POST JSON to /api/v1/<path> with a Django test client: (status, body)."""
    response = http.post(f"/api/v1/{path}", body, content_type="application/json")
    return response.status_code, response.json()


def make_token(user) -> str:
    from live.models import ApiToken

    return ApiToken.issue(user)[1]


@pytest.fixture
def admin_token(admin_user) -> str:
    return make_token(admin_user)


@pytest.fixture
def worker_token(worker_user) -> str:
    return make_token(worker_user)


@pytest.fixture
def other_token(other_user) -> str:
    return make_token(other_user)


# --- a real server --------------------------------------------------------------------


_given: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1: any, or one of SWITCHBOARD_TEST_PORTS ("19000-19099")
    on a machine where tests may listen only on some. A port given before in
    this run is given again only when no other is free: a stopped server may
    come back on its own port, and must not find another there."""
    first, _, last = os.environ.get("SWITCHBOARD_TEST_PORTS", "0").partition("-")
    ports = list(range(int(first), int(last or first) + 1))
    start = int.from_bytes(os.urandom(2), "big")  # spread the tries of parallel runs
    ports = ports[start % len(ports) :] + ports[: start % len(ports)]
    for _ in range(100 if ports == [0] else 1):
        for port in ports:
            found = _bind(port)
            if found is not None and found not in _given:
                _given.add(found)
                return found
    for port in ports:
        found = _bind(port)
        if found is not None:
            return found
    raise RuntimeError(f"no free port in {ports[0]}-{ports[-1]}")


def _bind(port: int) -> int | None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return None
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    """A process's resident memory, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def database_url() -> str:
    """The URL of the test database, for a server process to share it."""
    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    user = conf.get("USER") or "postgres"
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}"


class Listening:
    """Something serving on 127.0.0.1:`port`: its HTTP and socket addresses."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"


class Server(Listening):
    """`daphne project.asgi:application` in its own process, on a free port."""

    def __init__(self, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, "DATABASE_URL": database_url(), **env}
        self.process: subprocess.Popen | None = None
        self.log = Path(ROOT / f".server-{self.port}.log")

    def client(self, token: str) -> Client:
        return Client(self.url, token, timeout=10)

    def start(self) -> "Server":
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
             "project.asgi:application"],
            cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/openapi.json", timeout=1) as r:
                    json.load(r)
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("daphne did not start within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        """Stop at once, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    """One daphne per test module; tests use `live` (transactional) with it."""
    srv = Server(SWITCHBOARD_IDLE_TIMEOUT="300").start()
    yield srv
    srv.stop()
    srv.log.unlink(missing_ok=True)


@pytest.fixture
def live(server, transactional_db):
    """The module's server, with committed data visible to it."""
    return server


@pytest.fixture
def fresh_server(django_db_setup, transactional_db):
    """A server of this test's own, for tests that stop or restart it."""
    servers: list[Server] = []

    def start(port: int | None = None, **env) -> Server:
        srv = Server(port=port, **env).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
        srv.log.unlink(missing_ok=True)

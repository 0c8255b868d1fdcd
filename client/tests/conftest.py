"""The client's tests start servers that they stop and start again on the
same port, and proxies in front of them: each gets a port not given before
in this run (a stopped server may come back on its own port), from the
suite's free_port (any free port, or SWITCHBOARD_TEST_PORTS)."""

import pytest

from conftest import Server
from conftest import free_port as any_free_port

_given: set[int] = set()


def free_port() -> int:
    for _ in range(1000):
        port = any_free_port()
        if port not in _given:
            _given.add(port)
            return port
    raise RuntimeError("no free port that was not given before")


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    srv = Server(port=free_port(), SWITCHBOARD_IDLE_TIMEOUT="300").start()
    yield srv
    srv.stop()
    srv.log.unlink(missing_ok=True)


@pytest.fixture
def fresh_server(django_db_setup, transactional_db):
    """A server of this test's own, for tests that stop or restart it."""
    servers: list[Server] = []

    def start(port: int | None = None, **env) -> Server:
        srv = Server(port=port or free_port(), **env).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
        srv.log.unlink(missing_ok=True)

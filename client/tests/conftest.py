"""The client's tests serve on 127.0.0.1, ports 18800-18899 only: the
servers they start, the proxies in front of them, and the ports they know to
be closed."""

import itertools
import socket

import pytest

from conftest import Server

PORTS = range(18800, 18900)
_next = itertools.cycle(PORTS)


def free_port() -> int:
    """A port of the range that nothing listens on now, not given before
    lately (a stopped server may come back on its own)."""
    for _ in PORTS:
        port = next(_next)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


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

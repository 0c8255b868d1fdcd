"""A server process drains on SIGTERM (live.daphne_hooks, SWITCHBOARD_DRAIN_SECONDS):
it stops listening at once, finishes the request in flight (with
`Connection: close`, and /readyz saying 503), closes idle keep-alive
connections and closes sockets with 1012, then exits."""

import asyncio
import signal
import socket
import time

import pytest
import websockets

from live.tests import wsclient as wc


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def wait_refused(port: int) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            connect(port).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(60)
async def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_closes_sockets_1012(
    fresh_server, admin_token
):
    srv = fresh_server(SWITCHBOARD_DRAIN_SECONDS="5")
    ws = await wc.connect(srv.ws_url, admin_token)
    # A keep-alive connection that has been answered once and is idle.
    idle = connect(srv.port)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200")
    # A request in flight: its head not finished when the signal comes.
    in_flight = connect(srv.port)
    in_flight.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(0.2)

    srv.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(wait_refused, srv.port), "still listening after SIGTERM"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert idle.recv(65536) == b"", "an idle keep-alive connection stays open"

    in_flight.sendall(b"\r\n")
    answer = await asyncio.to_thread(read_all, in_flight)
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 503"), answer[:300]
    assert b"connection: close" in head and b"draining" in answer
    assert await asyncio.to_thread(srv.process.wait, 10) is not None


@pytest.mark.timeout(60)
async def test_with_no_drain_sigterm_cuts_the_request_in_flight(fresh_server):
    srv = fresh_server(SWITCHBOARD_DRAIN_SECONDS="0")
    in_flight = connect(srv.port)
    in_flight.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(0.2)
    srv.process.send_signal(signal.SIGTERM)
    await asyncio.to_thread(srv.process.wait, 10)
    try:
        in_flight.sendall(b"\r\n")
        answer = read_all(in_flight)
    except OSError:
        answer = b""
    assert answer == b""

"""The live path under load and faults, against real daphne processes:
one layer message per process, sockets that never read, a Redis restart."""

import asyncio
import base64
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import free_port, rss_mib
from live.tests import wsclient as wc

pytestmark = pytest.mark.timeout(240)


async def wait_for(check, timeout: float = 20.0, step: float = 0.2):
    end = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > end:
            return value
        await asyncio.sleep(step)


class RawSocket:
    """A WebSocket client on a plain TCP socket with a tiny receive buffer,
    that reads only when told to: a client that stopped reading."""

    def __init__(self, port: int, token: str, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (server frames are not masked)."""
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read(8))[0]
        return first & 0x0F, self._read(size)

    def close(self) -> None:
        self.sock.close()


def output_seqs(frames: list[dict]) -> list[int]:
    return [f["seq"] for f in frames if f.get("event") == "task.output"]


async def test_one_event_is_one_layer_message_per_process_whatever_the_watchers(live, admin_token):
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "many watchers")
    channel = f"session:{session['id']}"
    sockets = [await wc.connect(live.ws_url, admin_token) for _ in range(20)]
    try:
        # Both channels a session.update is on are watched in this process.
        for n, ws in enumerate(sockets):
            await wc.subscribe(ws, channel if n % 2 else "sessions")
        before = (await asyncio.to_thread(api.request, "GET", "stats"))["layer_messages"]
        for n in range(5):
            await asyncio.to_thread(api.update_session, session["id"], metadata={"n": n})
        for ws in sockets:
            frames = []
            while len(frames) < 5:
                frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "session.update")
                frames.append(frame)
            assert [f["data"]["metadata"]["n"] for f in frames] == list(range(5))

        async def counted():
            stats = await asyncio.to_thread(api.request, "GET", "stats")
            return stats if stats["layer_messages"] - before >= 5 else None

        stats = await wait_for(counted)  # figures are reported every 5 s
        assert stats, "the hub's messages were never counted"
        # Five events on two watched channels, to twenty sockets: five messages
        # (a message per channel would make ten, one per socket a hundred).
        assert stats["layer_messages"] - before < 10
    finally:
        for ws in sockets:
            await ws.close()


async def test_a_socket_that_never_reads_is_bounded_and_caught_up_when_it_reads(
    fresh_server, admin_token
):
    bound = 1024 * 1024
    server = fresh_server(SWITCHBOARD_SEND_BUFFER_BYTES=str(bound), SWITCHBOARD_SLOW_CLOSE="600")
    api = server.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "slow reader")
    task = await asyncio.to_thread(api.create_task, session["id"], "talks a lot")
    channel = f"task:{task['id']}"

    healthy_frames: list[dict] = []
    chunk = "x" * (256 * 1024)
    warm, count = 80, 160  # then 40 MiB of output, far past the bound
    async with await wc.connect(server.ws_url, admin_token) as healthy:
        await wc.subscribe(healthy, channel)

        async def read_healthy(until: int):
            while len(output_seqs(healthy_frames)) < until:
                healthy_frames.append(await wc.recv(healthy, timeout=60))

        # Warm up: the same traffic without the slow socket, so that what the
        # request path itself keeps is in the baseline.
        reader = asyncio.create_task(read_healthy(warm))
        for _ in range(warm):
            await asyncio.to_thread(api.output, task["id"], chunk)
        await asyncio.wait_for(reader, 90)

        slow = await asyncio.to_thread(RawSocket, server.port, admin_token)
        slow.send(f'{{"action": "subscribe", "channel": "{channel}", "id": 1}}')
        opcode, payload = await asyncio.to_thread(slow.frame)
        assert opcode == 1 and b'"subscribed"' in payload
        rss_before = peak = rss_mib(server.process.pid)
        reader = asyncio.create_task(read_healthy(warm + count))
        for _ in range(count):
            await asyncio.to_thread(api.output, task["id"], chunk)
            peak = max(peak, rss_mib(server.process.pid))
        await asyncio.wait_for(reader, 90)
        peak = max(peak, rss_mib(server.process.pid))

    # Unbounded, the server would keep the 40 MiB the slow socket never took
    # (before the bound it grew by all of it); bounded, it keeps about 1 MiB,
    # next to the few MiB the request path moves about by itself.
    assert peak - rss_before < 16, (rss_before, peak)
    seqs = output_seqs(healthy_frames)
    assert len(seqs) == warm + count and seqs == sorted(set(seqs))
    seqs = seqs[warm:]

    async def paused_seen():
        figures = await asyncio.to_thread(api.request, "GET", "stats")
        mine = [p for p in figures["processes"] if p["name"].endswith(f":{server.process.pid}")]
        return figures if mine and mine[0].get("pauses", 0) >= 1 else None

    stats = await wait_for(paused_seen)
    assert stats, "the slow socket was never paused"

    # Once it reads, the server catches it up from where it stopped: every
    # event once, in order, the same as the healthy reader's.
    got: list[dict] = []

    def read_slow():
        import json

        while len(output_seqs(got)) < count:
            opcode, payload = slow.frame()
            assert opcode == 1, (opcode, payload[:100])
            got.append(json.loads(payload))

    await asyncio.wait_for(asyncio.to_thread(read_slow), 60)
    slow.close()
    assert output_seqs(got) == seqs


async def test_a_socket_paused_too_long_is_closed_with_4503(fresh_server, admin_token):
    server = fresh_server(
        SWITCHBOARD_SEND_BUFFER_BYTES="65536",
        SWITCHBOARD_SLOW_CLOSE="1",
        SWITCHBOARD_IDLE_TIMEOUT="60",
    )
    api = server.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "stuck reader")
    task = await asyncio.to_thread(api.create_task, session["id"], "talks")
    slow = await asyncio.to_thread(RawSocket, server.port, admin_token)
    slow.send(f'{{"action": "subscribe", "channel": "task:{task["id"]}", "id": 1}}')
    await asyncio.to_thread(slow.frame)
    for _ in range(40):  # 10 MiB: more than the kernel's buffers take
        await asyncio.to_thread(api.output, task["id"], "y" * (256 * 1024))

    async def counted_out():
        figures = await asyncio.to_thread(api.request, "GET", "stats")
        mine = [p for p in figures["processes"] if p["name"].endswith(f":{server.process.pid}")]
        return figures if mine and mine[0]["connections"] == 0 else None

    # The watchdog looks every 5 s; processes report every 5 s.
    assert await wait_for(counted_out, timeout=20), "the stuck socket is still counted"
    assert "has not read for" in server.logs() and "(4503)" in server.logs()

    def rest():  # whatever was on its way, then the end: a close frame, or a reset
        while True:
            opcode, payload = slow.frame()
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0]

    try:
        code = await asyncio.wait_for(asyncio.to_thread(rest), 30)
    except (EOFError, ConnectionResetError):
        code = None  # dropped after the close handshake timed out
    finally:
        slow.close()
    assert code in (None, 4503)


@pytest.fixture
def own_redis():
    """A redis-server of this test's own on a free port (never the shared one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is needed for the Redis restart test")
        pytest.skip("redis-server is not installed")
    port = free_port()
    folder = tempfile.mkdtemp(prefix="switchboard-redis-")

    class Redis:
        url = f"redis://127.0.0.1:{port}/0"
        process: subprocess.Popen | None = None

        def start(self):
            self.process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", folder],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError("redis-server did not start")

        def stop(self):
            if self.process and self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)

    redis = Redis()
    redis.start()
    yield redis
    redis.stop()
    shutil.rmtree(folder, ignore_errors=True)


async def test_a_redis_restart_closes_no_socket_and_loses_no_event(
    fresh_server, own_redis, admin_token
):
    env = {"REDIS_URL": own_redis.url, "SWITCHBOARD_REDIS_PREFIX": "restart"}
    servers = [fresh_server(**env), fresh_server(**env)]
    api = servers[0].client(admin_token)
    session = await asyncio.to_thread(api.create_session, "through a restart")
    task = await asyncio.to_thread(api.create_task, session["id"], "steady")
    channel = f"session:{session['id']}"
    sockets = []
    for server in servers:
        for _ in range(3):
            ws = await wc.connect(server.ws_url, admin_token)
            start = (await wc.subscribe(ws, channel))["seq"]
            sockets.append(ws)
    received: list[list[dict]] = [[] for _ in sockets]

    async def listen(ws, into):
        while True:
            into.append(await wc.recv(ws, timeout=120))

    listeners = [
        asyncio.create_task(listen(ws, into)) for ws, into in zip(sockets, received, strict=True)
    ]
    stop = asyncio.Event()
    failures: list[str] = []

    async def write(server, offset):
        client = server.client(admin_token)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await asyncio.to_thread(client.progress, task["id"], (offset + n) % 100)
            except Exception as error:  # a write must never fail for the layer
                failures.append(repr(error))
            await asyncio.sleep(0.05)

    writers = [asyncio.create_task(write(s, i * 50)) for i, s in enumerate(servers)]
    await asyncio.sleep(2)
    own_redis.stop()
    await asyncio.sleep(2)
    own_redis.start()
    await asyncio.sleep(4)
    stop.set()
    await asyncio.gather(*writers)
    assert not failures, failures[:3]

    stored = []
    since = 0
    while True:
        page = await asyncio.to_thread(
            api.request, "GET", f"events?channel={channel}&since={since}&limit=5000"
        )
        stored += page["results"]
        since = page["seq"]
        if not page["has_more"]:
            break
    expected = [f["seq"] for f in stored if f["seq"] > start]
    assert len(expected) > 100

    for ws in sockets:  # a ping lets a socket that missed the last frames check the head
        await wc.send(ws, {"action": "ping"})

    def seqs(frames):
        return [f["seq"] for f in frames if f.get("type") == "event"]

    async def all_caught_up():
        return all(seqs(frames)[-1:] == expected[-1:] for frames in received)

    await wait_for(all_caught_up, timeout=40)
    for frames, listener in zip(received, listeners, strict=True):
        assert not listener.done(), listener.exception()  # no socket was closed
        assert seqs(frames) == expected
    for listener in listeners:
        listener.cancel()

    async def true_counts():
        figures = await asyncio.to_thread(api.request, "GET", "stats")
        ok = figures["connections"] == 6 and figures["subscriptions"] == {channel: 6}
        return figures if ok else None

    assert await wait_for(true_counts, timeout=20), "stats never came back to the true counts"
    for ws in sockets:
        await ws.close()
    with pytest.raises(ConnectionClosed):
        await sockets[0].recv()

"""A soak: mixed writers on two sessions from two server processes for a minute.

PostgreSQL only (the configuration that runs several processes; CI runs it with
Redis): log batches, progress, output chunks, cancel / retry cycles and new
sessions, from both processes at once, and progress on a second session
beside them, while a watcher on each process follows
every channel and reconnects now and then, resuming from its last seq. At the
end: no request failed, PostgreSQL saw no deadlock, each watcher got every
stored event of every channel once and in order, and neither process held more
database connections than its pool allows.

SWITCHBOARD_SOAK_SECONDS sets the length (60 by default).
"""

import asyncio
import os
import threading
import time

import pytest
from django.db import connection

from live.tests import wsclient as wc
from sessions_app.tests.test_database_load import call, server_connections

SECONDS = float(os.environ.get("SWITCHBOARD_SOAK_SECONDS", "60"))
POOL = 6
RECONNECT_EVERY = SECONDS / 4

pytestmark = [
    pytest.mark.timeout(SECONDS + 300),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="several server processes run on PostgreSQL"
    ),
]


async def query(function, *args):
    """Run a database query on a thread, closing that thread's connection after
    (left open, it would keep the test database from being dropped)."""

    def run():
        try:
            return function(*args)
        finally:
            connection.close()

    return await asyncio.to_thread(run)


def deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


class Writers:
    """Threads that keep writing until told to stop; what went wrong is kept."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.stop = threading.Event()
        self.failures: list[tuple] = []
        self.requests = 0
        self.threads: list[threading.Thread] = []

    def call(self, base, method, path, body=None, ok=(200, 201)):
        status, answer = call(base, method, path, self.token, body)
        self.requests += 1
        if status not in ok:
            self.failures.append((method, path, status, answer))
        return answer

    def loop(self, step, *args) -> None:
        def run():
            n = 0
            while not self.stop.is_set():
                n += 1
                step(n, *args)

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive()


class Watcher:
    """One socket on one server, subscribed to every channel; resumes from its
    last seq on each reconnect. `seqs[channel]` is what it got, in order."""

    def __init__(self, url: str, token: str, channels: list[str]) -> None:
        self.url, self.token, self.channels = url, token, channels
        self.start: dict[str, int] = {}
        self.seqs: dict[str, list[int]] = {channel: [] for channel in channels}
        self.reconnects = 0

    def since(self, channel: str) -> int:
        got = self.seqs[channel]
        return got[-1] if got else self.start[channel]

    async def follow(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            async with await wc.connect(self.url, self.token) as ws:
                for channel in self.channels:
                    fields = {} if channel not in self.start else {"since": self.since(channel)}
                    await wc.send(ws, {"action": "subscribe", "channel": channel,
                                       "id": channel, **fields})  # fmt: skip
                pending = set(self.channels)
                reconnect_at = loop.time() + RECONNECT_EVERY
                while True:
                    if stop.is_set():
                        return
                    if loop.time() > reconnect_at and not pending:
                        break
                    try:
                        frame = await wc.recv(ws, timeout=1.0)
                    except TimeoutError:
                        continue
                    self.take(frame, pending)
            self.reconnects += 1

    def take(self, frame: dict, pending: set[str]) -> None:
        kind = frame.get("type")
        if kind == "subscribed":
            assert frame["channel"] in pending, frame
            assert not frame.get("reset"), frame
            pending.discard(frame["channel"])
            self.start.setdefault(frame["channel"], frame["seq"])
        elif kind == "event":
            self.seqs[frame["channel"]].append(frame["seq"])
        elif kind == "error":
            raise AssertionError(frame)


def stored(base: str, token: str, channel: str, since: int) -> list[int]:
    seqs = []
    while True:
        status, page = call(
            base, "GET", f"events?channel={channel}&since={since}&limit=5000", token
        )
        assert status == 200, page
        seqs += [f["seq"] for f in page["results"]]
        since = page["seq"]
        if not page["has_more"]:
            return seqs


async def test_a_minute_of_mixed_writers_on_two_processes(fresh_server, admin_token):
    env = {
        "SWITCHBOARD_DB_POOL_MAX": str(POOL),
        "SWITCHBOARD_TOKEN_RATE": "0",
        "SWITCHBOARD_LOG_LINES_PER_SECOND": "1000000",
        "SWITCHBOARD_LOG_LINES_BURST": "1000000",
    }
    servers = [fresh_server(**env), fresh_server(**env)]
    first, second = (server.url for server in servers)
    _, session = call(first, "POST", "sessions", admin_token, {"name": "soak"})
    tasks = [
        call(first, "POST", f"sessions/{session['id']}/tasks", admin_token,
             {"name": f"t{n}", "status": "running"})[1]
        for n in range(5)
    ]  # fmt: skip
    # A second session, written from both processes at once with the first:
    # writers of different sessions share no lock, so `tasks` and `sessions`
    # see ids commit out of order, and must relay them in order all the same.
    _, beside = call(first, "POST", "sessions", admin_token, {"name": "soak beside"})
    besides = [
        call(first, "POST", f"sessions/{beside['id']}/tasks", admin_token,
             {"name": f"b{n}", "status": "running"})[1]
        for n in range(2)
    ]  # fmt: skip
    channels = [
        "sessions",
        "tasks",
        f"session:{session['id']}",
        f"logs:{session['id']}",
        f"session:{beside['id']}",
        *(f"task:{task['id']}" for task in tasks + besides),
    ]
    deadlocks_before = await query(deadlocks)
    writers = Writers(admin_token)

    def logs(n, base):
        entries = [{"message": f"line {n}.{i}", "task_id": tasks[i % 3]["id"]} for i in range(20)]
        writers.call(base, "POST", f"sessions/{session['id']}/logs", {"entries": entries})

    def progress(n, base, task):
        writers.call(base, "PATCH", f"tasks/{task['id']}", {"progress": n % 100, "message": f"{n}"})

    def output(n, base, task):
        writers.call(base, "POST", f"tasks/{task['id']}/output", {"chunk": f"chunk {n}\n"})

    def steer(n, base, task):
        for method, path, body in (
            ("POST", f"tasks/{task['id']}/cancel", None),
            ("PATCH", f"tasks/{task['id']}", {"status": "cancelled"}),
            ("POST", f"tasks/{task['id']}/retry", None),
            ("PATCH", f"tasks/{task['id']}", {"status": "running"}),
        ):
            writers.call(base, method, path, body)

    def sessions(n, base):
        other = writers.call(base, "POST", "sessions", {"name": f"soak {n}"})
        if "id" in other:
            writers.call(base, "PATCH", f"sessions/{other['id']}", {"status": "completed"})
        time.sleep(0.5)

    watchers = [Watcher(server.ws_url, admin_token, channels) for server in servers]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    follow = [asyncio.create_task(w.follow(stop)) for w in watchers]
    while any(channel not in w.start for w in watchers for channel in channels):
        await asyncio.sleep(0.1)

    writers.loop(logs, first)
    writers.loop(logs, second)
    writers.loop(progress, first, tasks[0])
    writers.loop(progress, second, tasks[1])
    writers.loop(output, second, tasks[4])
    writers.loop(progress, first, besides[0])
    writers.loop(progress, second, besides[1])
    writers.loop(steer, first, tasks[2])
    writers.loop(steer, second, tasks[3])
    writers.loop(sessions, first)
    writers.loop(sessions, second)

    held = {server.process.pid: 0 for server in servers}
    ends = loop.time() + SECONDS
    while loop.time() < ends:
        for pid in held:
            held[pid] = max(held[pid], await query(server_connections, pid))
        await asyncio.sleep(1)
    await asyncio.to_thread(writers.join)
    assert not writers.failures, writers.failures[:5]
    assert writers.requests > 1000, writers.requests
    assert all(1 <= count <= POOL for count in held.values()), held

    expected = {
        channel: await asyncio.to_thread(
            stored, first, admin_token, channel, min(w.start[channel] for w in watchers)
        )
        for channel in channels
    }
    for channel in channels:
        assert expected[channel], channel

    # The watchers stop once they have the newest stored event of every channel.
    async def caught_up():
        while not all(
            w.since(channel) >= expected[channel][-1] for w in watchers for channel in channels
        ):
            await asyncio.sleep(0.2)

    await asyncio.wait_for(caught_up(), 30)
    stop.set()
    await asyncio.gather(*follow)
    for watcher in watchers:
        assert watcher.reconnects >= 2, watcher.reconnects
        for channel in channels:
            want = [seq for seq in expected[channel] if seq > watcher.start[channel]]
            assert watcher.seqs[channel] == want, (channel, len(watcher.seqs[channel]), len(want))

    await asyncio.sleep(1)
    assert await query(deadlocks) == deadlocks_before
    for server in servers:
        assert "deadlock detected" not in server.logs()

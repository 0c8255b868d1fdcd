"""Order without a global lock (PostgreSQL): writers of different sessions
never wait for each other; channels that span sessions are read, and
relayed, up to the commit horizon, so a reader never passes a write that
is still in flight. See docs/ARCHITECTURE.md, "Order without a global lock"."""

import asyncio
import threading
from contextlib import contextmanager

import pytest
from django.db import OperationalError, connection, transaction

from live import events, ordering
from live.models import Event
from live.tests import wsclient as wc
from logs_app import services as log_services
from sessions_app import services

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="SQLite has one writer at a time (BEGIN IMMEDIATE): ids follow commit order",
    ),
]


@contextmanager
def held_open(write, wait: float = 10):
    """`write()` in another thread, its transaction held open after it until
    the block ends; yields the newest seq once it has written."""
    recorded, go = threading.Event(), threading.Event()
    seq: list[int] = []

    def hold():
        try:
            with transaction.atomic():
                write()
                seq.append(Event.objects.latest("id").pk)
                recorded.set()
                go.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert recorded.wait(wait)
    try:
        yield seq[0]
    finally:
        go.set()
        holder.join(30)


def a_write_held_open(task_id: int):
    """A progress report on `task_id`, held open (see held_open); yields its seq."""
    return held_open(lambda: services.update_task(task_id, progress=50))


@contextmanager
def no_waiting(milliseconds: int = 300):
    """Any lock this connection would wait for longer than this is an error."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{milliseconds}ms'")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")


def running_task(name: str):
    session = services.create_session(name=name)[0]
    return session, services.create_task(session.pk, name="t", status="running")[0]


@pytest.mark.django_db(transaction=True)
def test_writers_of_two_sessions_never_wait_for_each_other():
    """Session A's write is held open; session B's report, log batch, change
    and a new session all commit without waiting for any lock, and the
    horizon is read without waiting either. A second write to A does wait:
    the probe can tell a wait when there is one."""
    _, busy = running_task("a")
    other, task = running_task("b")
    with a_write_held_open(busy.pk), no_waiting():
        services.update_task(task.pk, progress=10)
        log_services.append_entries(other.pk, [{"message": "elsewhere"}])
        services.update_session(other.pk, name="renamed")
        services.create_session(name="new")
        ordering.horizon()
        with pytest.raises(OperationalError, match="lock timeout"):
            services.update_task(busy.pk, progress=60)


@pytest.mark.django_db(transaction=True)
def test_a_wide_channel_is_read_up_to_the_oldest_write_in_flight():
    """A's report takes seq a and stays open; B's takes b > a and commits.
    Readers of `tasks` (a wide channel) stop below a: its head, a read and
    the horizon. B's own channels are in commit order and read at once.
    Once A commits, `tasks` reads a, then b."""
    _, busy = running_task("a")
    _, task = running_task("b")
    since = events.newest_seq()
    with a_write_held_open(busy.pk) as a:
        services.update_task(task.pk, progress=10)
        b = Event.objects.latest("id").pk
        assert a < b
        assert ordering.horizon() < a
        assert events.channel_head("tasks") < a
        assert [s.seq for s in events.read_channel("tasks", since)] == []
        assert [s.seq for s in events.read_channel(f"task:{task.pk}", since)] == [b]
        assert events.channel_head(f"task:{task.pk}") == b
    assert ordering.horizon() >= b
    assert [s.seq for s in events.read_channel("tasks", since)] == [a, b]


@pytest.mark.django_db(transaction=True)
def test_the_horizon_moves_past_a_write_rolled_back():
    """A transaction that took an id and rolled back holds nothing back."""
    _, task = running_task("a")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.update_task(task.pk, progress=5)
        raise RuntimeError("rolled back")
    services.update_task(task.pk, progress=6)
    assert ordering.horizon() == events.newest_seq()


async def test_a_socket_gets_a_wide_channel_in_seq_order_across_writers(live, admin_token):
    """One socket on `tasks` and on B's task channel. A's report is held
    open in the test process while B's goes through the server and commits:
    B's task channel relays it at once, `tasks` holds it back (relaying it
    would let the socket's cursor pass A's). When A commits, `tasks` relays
    A's, then B's, in seq order."""
    from asgiref.sync import sync_to_async

    _, busy = await sync_to_async(running_task)("a")
    _, task = await sync_to_async(running_task)("b")
    api = live.client(admin_token)
    ws = await wc.connect(live.ws_url, admin_token)
    try:
        await wc.subscribe(ws, "tasks")
        await wc.subscribe(ws, f"task:{task.pk}")
        held = a_write_held_open(busy.pk)
        a = await asyncio.to_thread(held.__enter__)
        try:
            await asyncio.to_thread(api.update_task, task.pk, progress=10)
            frame, before = await wc.recv_until(
                ws, lambda f: f.get("channel") == f"task:{task.pk}" and f.get("type") == "event"
            )
            b = frame["seq"]
            assert a < b
            await asyncio.sleep(0.5)
            early = [f for f in before + await wc.drain(ws, 0.2) if f.get("channel") == "tasks"]
            assert early == []  # nothing on `tasks` while A is in flight
        finally:
            await asyncio.to_thread(held.__exit__, None, None, None)
        seqs = []
        while len(seqs) < 2:
            frame, _ = await wc.recv_until(
                ws, lambda f: f.get("channel") == "tasks" and f.get("type") == "event"
            )
            seqs.append(frame["seq"])
        assert seqs[0] == a and seqs[1] == b
    finally:
        await ws.close()


@pytest.mark.django_db(transaction=True)
def test_a_large_batch_in_flight_stalls_no_write_of_another_session():
    """A batch of 1,000 reports and 1,000 steps on session A, its transaction
    held open once applied: another session's report, log batch and batch
    commit meanwhile without waiting for any lock."""
    from project.batch import BatchIn, _apply

    busy_session, busy = running_task("a")
    other, task = running_task("b")
    batch = BatchIn(
        tasks=[{"id": busy.pk, "progress": n % 100} for n in range(1000)],
        output=[{"task_id": busy.pk, "status": "thinking", "message": f"{n}"} for n in range(1000)],
    )
    with held_open(lambda: _apply(busy_session.pk, batch), wait=60), no_waiting():
        services.update_task(task.pk, progress=10)
        log_services.append_entries(other.pk, [{"message": "elsewhere"}])
        _apply(other.pk, BatchIn(tasks=[{"id": task.pk, "progress": 20}]))
    assert Event.objects.filter(task_id=busy.pk).count() >= 2000


async def test_a_wide_event_that_came_while_its_channel_was_unwatched_reaches_a_later_subscriber(
    live, admin_token
):
    """The process watches `tasks` only. Session Y's change d commits; a write
    of X takes a (held open); Y's change b commits while nobody here watches
    `sessions`; then a socket subscribes `sessions` (its cursor: at most d,
    below a) and Y's change c commits. Once a commits, the late subscriber
    gets b and then c: b must not be jumped over because it came while its
    channel was unwatched."""
    from asgiref.sync import sync_to_async

    _, busy = await sync_to_async(running_task)("x")
    api = live.client(admin_token)
    y = await asyncio.to_thread(api.create_session, "y")
    watcher = await wc.connect(live.ws_url, admin_token)
    late = await wc.connect(live.ws_url, admin_token)
    try:
        await wc.subscribe(watcher, "tasks")
        await asyncio.to_thread(api.update_session, y["id"], metadata={"n": "d"})
        await asyncio.sleep(0.5)
        held = a_write_held_open(busy.pk)
        await asyncio.to_thread(held.__enter__)
        try:
            await asyncio.to_thread(api.update_session, y["id"], metadata={"n": "b"})
            await asyncio.sleep(0.5)  # its message reaches the hub, unwatched
            cursor = (await wc.subscribe(late, "sessions"))["seq"]
            await asyncio.to_thread(api.update_session, y["id"], metadata={"n": "c"})
            await asyncio.sleep(0.5)  # c waits in the hub, behind a
        finally:
            await asyncio.to_thread(held.__exit__, None, None, None)
        got = []
        while "c" not in got:
            frame, _ = await wc.recv_until(
                late, lambda f: f.get("channel") == "sessions" and f.get("type") == "event"
            )
            assert frame["seq"] > cursor
            got.append(frame["data"]["metadata"].get("n"))
        assert got == ["b", "c"]
    finally:
        await watcher.close()
        await late.close()


async def test_no_frame_of_a_channel_follows_its_unsubscribed_reply(live, admin_token):
    """A write rolls back (a gap in the ids), then one transaction commits
    2,000 reports: the socket reads `tasks` from the database, in pages. It
    unsubscribes at the first frame; after the `unsubscribed` reply, not one
    more frame of `tasks` arrives."""
    from asgiref.sync import sync_to_async

    _, task = await sync_to_async(running_task)("many")

    def write():
        try:
            with pytest.raises(RuntimeError), transaction.atomic():
                services.update_task(task.pk, progress=1)
                raise RuntimeError("rolled back")
            with transaction.atomic():
                for n in range(2000):
                    services.update_task(task.pk, progress=n % 100)
        finally:
            connection.close()

    ws = await wc.connect(live.ws_url, admin_token)
    try:
        await wc.subscribe(ws, "tasks")
        writer = asyncio.create_task(asyncio.to_thread(write))
        await wc.recv_until(ws, lambda f: f.get("channel") == "tasks", timeout=60)
        await wc.send(ws, {"action": "unsubscribe", "channel": "tasks", "id": "off"})
        await wc.recv_until(ws, lambda f: f.get("id") == "off")
        await writer
        after = [f for f in await wc.drain(ws, 1.0) if f.get("channel") == "tasks"]
        assert after == []
    finally:
        await ws.close()

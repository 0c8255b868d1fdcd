"""The consumer in-process, through WebsocketCommunicator, with real transactions."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from live import streams
from live.models import Retention
from live.publisher import publisher
from project.asgi import application
from sessions_app import output, services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

db = database_sync_to_async


async def connect(token: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, "/ws/", headers=[(b"authorization", f"Bearer {token}".encode())]
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def subscribe(ws, channel: str, **fields) -> dict:
    await ws.send_json_to({"action": "subscribe", "channel": channel, "id": 1, **fields})
    reply = await ws.receive_json_from(timeout=5)
    assert reply["type"] == "subscribed", reply
    return reply


async def next_event(ws, kind: str, timeout: float = 5) -> dict:
    while True:
        frame = await ws.receive_json_from(timeout=timeout)
        if frame.get("event") == kind:
            return frame


async def test_the_sessions_channel_shows_a_user_only_their_sessions(
    worker_token, worker_user, other_user
):
    mine = (await db(services.create_session)(name="mine", owner=worker_user))[0]
    await db(services.create_session)(name="theirs", owner=other_user)
    ws = await connect(worker_token)
    reply = await subscribe(ws, "sessions")
    assert [s["name"] for s in reply["snapshot"]["sessions"]] == ["mine"]
    assert reply["snapshot"]["counts"] == {"pending": 1}
    await db(services.create_session)(name="theirs too", owner=other_user)
    await db(services.update_session)(mine.pk, status="running")
    frame = await next_event(ws, "session.update")
    assert frame["data"]["name"] == "mine" and frame["data"]["status"] == "running"
    assert await ws.receive_nothing(0.3)
    await ws.disconnect()


async def test_a_message_the_layer_lost_is_filled_in_from_the_database(
    admin_token, admin_user, monkeypatch, settings
):
    monkeypatch.setitem(settings.SWITCHBOARD, "HEAD_CHECK_SECONDS", 0.2)
    session = (await db(services.create_session)(name="s", owner=admin_user))[0]
    ws = await connect(admin_token)
    await subscribe(ws, f"session:{session.pk}")
    real = publisher.publish
    monkeypatch.setattr(publisher, "publish", lambda messages: None)
    await db(services.update_session)(session.pk, metadata={"n": 1})  # never published
    monkeypatch.setattr(publisher, "publish", real)
    assert await ws.receive_nothing(0.3)
    await db(services.update_session)(session.pk, metadata={"n": 2})
    first = await next_event(ws, "session.update")
    second = await next_event(ws, "session.update")
    assert [first["data"]["metadata"], second["data"]["metadata"]] == [{"n": 1}, {"n": 2}]
    assert second["seq"] > first["seq"]

    # A lost message with nothing after it is found by the process's check
    # of the watched channels' heads.
    monkeypatch.setattr(publisher, "publish", lambda messages: None)
    await db(services.update_session)(session.pk, metadata={"n": 3})
    monkeypatch.setattr(publisher, "publish", real)
    third = await next_event(ws, "session.update")
    assert third["data"]["metadata"] == {"n": 3}
    await ws.disconnect()


async def test_resume_replays_what_was_missed_and_a_pruned_cursor_resets(admin_token, admin_user):
    session = (await db(services.create_session)(name="s", owner=admin_user))[0]
    task = (await db(services.create_task)(session.pk, name="t", status="running"))[0]
    ws = await connect(admin_token)
    reply = await subscribe(ws, f"task:{task.pk}")
    cursor = reply["seq"]
    assert reply["snapshot"]["task"]["id"] == str(task.pk)
    await ws.disconnect()
    for n in range(3):
        await db(services.update_task)(task.pk, progress=n * 10)
    await db(output.append_output)(task.pk, "hello")
    ws = await connect(admin_token)
    reply = await subscribe(ws, f"task:{task.pk}", since=cursor)
    assert reply["seq"] == cursor and "snapshot" not in reply
    frames = [await ws.receive_json_from() for _ in range(4)]
    assert [f["event"] for f in frames] == ["progress.update"] * 3 + ["task.output"]
    assert frames[-1]["data"]["chunk"] == "hello"
    assert await ws.receive_nothing(0.3)
    await ws.disconnect()

    await db(Retention.objects.create)(pruned_through=cursor + 2)
    ws = await connect(admin_token)
    reply = await subscribe(ws, f"task:{task.pk}", since=cursor)
    assert reply["reset"] is True and reply["snapshot"]["task"]["progress"] == 20
    reply = await subscribe(ws, f"task:{task.pk}", since=10**12)
    assert reply["reset"] is True
    await ws.disconnect()


async def test_sockets_resuming_one_channel_at_once_share_the_reads(
    admin_token, admin_user, monkeypatch
):
    """Twelve sockets resume a task's 300 events from 0 at the same moment
    (reads slowed down so that they overlap, as in a storm after a restart):
    each gets every event once and in order, and the database is read for
    about one socket's worth of events, not twelve."""
    session = (await db(services.create_session)(name="s", owner=admin_user))[0]
    task = (await db(services.create_task)(session.pk, name="t", status="running"))[0]

    def progress():
        for n in range(300):
            services.update_task(task.pk, progress=n % 100)

    await db(progress)()
    stored = [
        frame["seq"]
        for frame in (await db(streams.read_visible)(
            admin_user, streams.parse(f"task:{task.pk}"), 0, 1000
        ))[0]
    ]  # fmt: skip
    read_visible = streams.read_visible
    rows_read = []

    def slow_read(user, ref, since, limit):
        time.sleep(0.2)
        frames, cursor = read_visible(user, ref, since, limit)
        rows_read.append(len(frames))
        return frames, cursor

    monkeypatch.setattr(streams, "read_visible", slow_read)
    sockets = [await connect(admin_token) for _ in range(12)]

    async def resume(ws) -> list[int]:
        await subscribe(ws, f"task:{task.pk}", since=0)
        seqs = []
        while len(seqs) < len(stored):
            frame = await ws.receive_json_from(timeout=10)
            if frame.get("type") == "event":
                seqs.append(frame["seq"])
        assert await ws.receive_nothing(0.3)
        return seqs

    got = await asyncio.gather(*(resume(ws) for ws in sockets))
    assert all(seqs == stored for seqs in got)
    assert len(stored) >= 300
    assert sum(rows_read) <= 2 * len(stored), rows_read  # unshared: 12 times
    for ws in sockets:
        await ws.disconnect()


async def test_unsubscribe_stops_the_events(admin_token, admin_user):
    session = (await db(services.create_session)(name="s", owner=admin_user))[0]
    ws = await connect(admin_token)
    await subscribe(ws, f"session:{session.pk}")
    await ws.send_json_to({"action": "unsubscribe", "channel": f"session:{session.pk}", "id": 9})
    reply = await ws.receive_json_from()
    assert reply == {"type": "unsubscribed", "id": 9, "channel": f"session:{session.pk}",
                     "was_subscribed": True}  # fmt: skip
    await db(services.update_session)(session.pk, status="running")
    assert await ws.receive_nothing(0.3)
    await ws.disconnect()


async def test_staff_see_live_stats_on_the_system_channel(admin_token, settings):
    settings.SWITCHBOARD = {**settings.SWITCHBOARD, "STATS_INTERVAL": 1}
    ws = await connect(admin_token)
    reply = await subscribe(ws, "system")
    assert reply["snapshot"]["stats"]["connections"] >= 1
    frame = await asyncio.wait_for(next_event(ws, "system.stats"), 5)
    assert frame["channel"] == "system" and frame["data"]["subscriptions"]["system"] >= 1
    await ws.disconnect()


async def test_a_token_with_a_foreign_origin_and_no_identity_are_refused(admin_token):
    for headers in (
        [(b"authorization", f"Bearer {admin_token}".encode()), (b"origin", b"http://evil.example")],
        [],
        [(b"authorization", b"Basic abc")],
    ):
        communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
        connected, _ = await communicator.connect()
        assert not connected


async def test_the_tasks_channel_carries_every_visible_task(worker_token, worker_user, other_user):
    mine = (await db(services.create_session)(name="mine", owner=worker_user))[0]
    theirs = (await db(services.create_session)(name="theirs", owner=other_user))[0]
    ws = await connect(worker_token)
    reply = await subscribe(ws, "tasks")
    assert reply["snapshot"]["tasks"] == []
    await db(services.create_task)(theirs.pk, name="hidden")
    task = (await db(services.create_task)(mine.pk, name="shown"))[0]
    await db(services.update_task)(task.pk, progress=50)
    created = await next_event(ws, "task.update")
    progress = await next_event(ws, "progress.update")
    assert created["data"]["name"] == "shown" and progress["data"]["progress"] == 50
    assert await ws.receive_nothing(0.3)
    await ws.disconnect()

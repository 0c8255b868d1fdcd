"""The whole server: a real daphne process and a real WebSocket client."""

import asyncio

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.core.management import call_command
from websockets.exceptions import ConnectionClosed, InvalidStatus

from live.tests import wsclient as wc
from live.tests.concurrent_resume import check_resume_with_concurrent_writers
from sessions_app import services

pytestmark = pytest.mark.timeout(180)


def events_of(frames, channel=None):
    return [
        f for f in frames if f["type"] == "event" and (channel is None or f["channel"] == channel)
    ]


async def test_live_updates_reach_a_subscriber_in_order(live, admin_token):
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "live")
    task = await asyncio.to_thread(api.create_task, session["id"], "step")
    async with await wc.connect(live.ws_url, admin_token) as ws:
        reply = await wc.subscribe(ws, f"session:{session['id']}")
        assert reply["snapshot"]["session"]["id"] == session["id"]
        assert [t["id"] for t in reply["snapshot"]["tasks"]] == [task["id"]]
        await asyncio.to_thread(api.update_task, task["id"], status="running", progress=12.34)
        frame, before = await wc.recv_until(ws, lambda f: f.get("event") == "progress.update")
        assert frame["channel"] == f"session:{session['id']}"
        assert frame["data"]["progress"] == 12.34
        assert frame["data"]["total_tasks"] == 1
        assert frame["ts"].endswith("+00:00")
        seqs = [f["seq"] for f in events_of(before) + [frame]]
        assert seqs == sorted(set(seqs)) and seqs[0] > reply["seq"]
        assert any(f["event"] == "task.update" and f["data"]["status"] == "running" for f in before)


async def test_cancel_over_the_socket_is_acked_then_seen(live, admin_token):
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "cancel")
    pending = await asyncio.to_thread(api.create_task, session["id"], "waiting")
    running = await asyncio.to_thread(api.create_task, session["id"], "busy")
    await asyncio.to_thread(api.update_task, running["id"], status="running")
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.send(ws, {"action": "cancel_task", "task_id": pending["id"], "id": 1})
        ack = await wc.recv(ws)
        assert ack == {**ack, "type": "ack", "id": 1, "changed": True, "status": "cancelled"}
        update = await wc.recv(ws)
        assert update["event"] == "task.update" and update["data"]["status"] == "cancelled"

        await wc.subscribe(ws, f"task:{running['id']}")
        await wc.send(ws, {"action": "cancel_task", "task_id": running["id"], "id": 2})
        ack = await wc.recv(ws)
        assert ack["type"] == "ack" and ack["cancel_requested"] is True
        update, _ = await wc.recv_until(ws, lambda f: f.get("event") == "task.update")
        assert update["data"]["cancel_requested"] is True
        # The worker sees the request in the API's answers, then reports back.
        reply = await asyncio.to_thread(api.progress, running["id"], 50)
        assert reply["cancel_requested"] is True
        await asyncio.to_thread(api.update_task, running["id"], status="cancelled")

        await wc.send(ws, {"action": "cancel_task", "task_id": running["id"], "id": 3})
        ack, _ = await wc.recv_until(ws, lambda f: f.get("id") == 3)
        assert ack["changed"] is False and ack["status"] == "cancelled"


async def test_resume_with_concurrent_writers_skips_nothing_and_repeats_nothing(
    live, fresh_server, admin_token
):
    other = fresh_server()  # a second server process writes too
    await check_resume_with_concurrent_writers(
        [other.url, live.url], [live.ws_url], admin_token, tasks=4, steps=25
    )


async def test_a_client_resumes_across_a_server_restart_and_a_replay(
    fresh_server, admin_token, admin_user, tmp_path
):
    srv = fresh_server()
    api = srv.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "restart", None, "restart-1")
    task = await asyncio.to_thread(api.create_task, session["id"], "step")
    channel = f"session:{session['id']}"
    async with await wc.connect(srv.ws_url, admin_token) as ws:
        await wc.subscribe(ws, channel)
        await asyncio.to_thread(api.progress, task["id"], 10)
        last, _ = await wc.recv_until(ws, lambda f: f.get("event") == "progress.update")
    srv.kill()

    # While the server is down: a service write and a replayed event file.
    await sync_to_async(services.update_task)(int(task["id"]), progress=20, message="offline")
    events_file = tmp_path / "events.jsonl"
    events_file.write_text(
        '{"ts": "2026-11-21T10:00:00+00:00", "event": "progress.update", "session": "restart-1",'
        f' "task": "{task["id"]}", "data": {{"progress": 30, "message": "replayed"}}}}\n'
    )
    await sync_to_async(call_command)("replay_events", str(events_file), "--speed", "0")

    srv.start()
    async with await wc.connect(srv.ws_url, admin_token) as ws:
        reply = await wc.subscribe(ws, channel, since=last["seq"])
        assert reply["seq"] == last["seq"]
        missed = events_of(await wc.drain(ws, quiet=1.0))
        progress = [f["data"]["progress"] for f in missed if f["event"] == "progress.update"]
        assert progress == [20, 30]
        assert [f["seq"] for f in missed] == sorted({f["seq"] for f in missed})
        # And then live again.
        await asyncio.to_thread(api.progress, task["id"], 40)
        frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "progress.update")
        assert frame["data"]["progress"] == 40


async def test_bad_frames_get_error_frames_and_the_connection_stays_open(
    live, admin_token, worker_token
):
    api = live.client(admin_token)
    hidden = await asyncio.to_thread(api.create_session, "not for the worker")
    async with await wc.connect(live.ws_url, worker_token) as ws:
        cases = [
            ("not json", "invalid_json", None),
            ("[1, 2]", "invalid_json", None),
            ({"action": "dance"}, "invalid_action", "action"),
            ({"channel": "sessions"}, "invalid_action", "action"),
            ({"action": "subscribe", "channel": "nope"}, "invalid_channel", "channel"),
            ({"action": "subscribe", "channel": "session:999999"}, "invalid_channel", "channel"),
            ({"action": "subscribe", "channel": f"session:{hidden['id']}"}, "invalid_channel", "channel"),
            ({"action": "subscribe", "channel": "sessions", "since": "soon"}, "invalid_action", "since"),
            ({"action": "subscribe", "channel": "sessions", "since": -1}, "invalid_action", "since"),
            ({"action": "subscribe", "channel": "logs:1", "filter": "x"}, "invalid_action", "filter"),
            ({"action": "cancel_task"}, "invalid_action", "task_id"),
            ({"action": "cancel_task", "task_id": "abc"}, "invalid_action", "task_id"),
            ({"action": "cancel_task", "task_id": 999999}, "not_found", "task_id"),
            ({"action": "subscribe", "channel": "system"}, "forbidden", "channel"),
        ]  # fmt: skip
        for index, (frame, code, field) in enumerate(cases):
            if isinstance(frame, dict):
                frame = {**frame, "id": index}
            await wc.send(ws, frame)
            error = await wc.recv(ws)
            assert error["type"] == "error" and error["code"] == code, (frame, error)
            assert error.get("field") == field, (frame, error)
            if isinstance(frame, dict):
                assert error["id"] == index
            if code == "invalid_channel":
                assert "session:<id>" in error["available_channels"]
        await wc.send(ws, {"action": "ping", "ts": 42, "id": "still-here"})
        assert await wc.recv(ws) == {"type": "pong", "id": "still-here", "ts": 42}


async def test_a_frame_over_the_limit_gets_too_large_and_a_close(fresh_server, admin_token):
    srv = fresh_server(SWITCHBOARD_MAX_FRAME_BYTES="65536")
    async with await wc.connect(srv.ws_url, admin_token) as ws:
        await wc.send(ws, {"action": "ping", "pad": "x" * 70000})
        error = await wc.recv(ws)
        assert error["type"] == "error" and error["code"] == "too_large"
        with pytest.raises(ConnectionClosed) as closed:
            await wc.recv(ws)
        assert closed.value.rcvd.code == 4413


async def test_a_frame_over_a_mebibyte_is_cut_off_and_the_server_goes_on(live, admin_token):
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.send(ws, {"action": "ping", "pad": "x" * (1024 * 1024 + 10)})
        with pytest.raises(ConnectionClosed):
            await wc.recv(ws)
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.send(ws, {"action": "ping", "ts": 1})
        assert (await wc.recv(ws))["type"] == "pong"


async def test_a_hundred_frames_a_second_are_served_and_a_flood_is_cut_off(live, admin_token):
    async with await wc.connect(live.ws_url, admin_token) as ws:
        for n in range(150):
            await wc.send(ws, {"action": "ping", "ts": n})
        pongs = [await wc.recv(ws) for _ in range(150)]
        assert [p["ts"] for p in pongs] == list(range(150))

    async with await wc.connect(live.ws_url, admin_token) as ws:
        codes = set()
        try:
            for n in range(5000):
                await wc.send(ws, {"action": "ping", "ts": n})
            while True:
                codes.add((await wc.recv(ws, 5)).get("code"))
        except ConnectionClosed as closed:
            assert closed.rcvd.code == 4429
        assert "rate_limited" in codes
    # The frames still queued behind the close are dropped quietly: the consumer
    # lives on to its disconnect, which counts the connection out.
    api = live.client(admin_token)
    for _ in range(40):
        stats = await asyncio.to_thread(api.request, "GET", "stats")
        if stats["connections"] == 0:
            break
        await asyncio.sleep(0.25)
    assert stats["connections"] == 0
    assert "Exception inside application" not in live.logs()


@pytest.mark.parametrize(
    "how",
    ["nothing", "bad token", "token from a foreign origin", "cookie without origin",
     "cookie from a foreign origin", "cookie from another port of the host",
     "token from another port of the host", "cookie of a non-staff user",
     "cookie from the other scheme of the host", "token from the other scheme of the host"],
)  # fmt: skip
async def test_handshakes_without_a_valid_identity_are_refused(
    live, admin_token, admin_user, worker_user, how
):
    from django.test import Client as DjangoClient

    cookie = None
    user = worker_user if how == "cookie of a non-staff user" else admin_user
    if "cookie" in how:
        browser = DjangoClient()
        await sync_to_async(browser.force_login)(user)
        cookie = f"sessionid={browser.cookies['sessionid'].value}"
    origin = {
        "token from a foreign origin": "http://evil.example",
        "cookie from a foreign origin": "http://evil.example",
        "cookie from another port of the host": "http://127.0.0.1:9",
        "token from another port of the host": "http://127.0.0.1:9",
        "cookie of a non-staff user": f"http://127.0.0.1:{live.port}",
        # An https page of the same host and port: another origin than this http one.
        "cookie from the other scheme of the host": f"https://127.0.0.1:{live.port}",
        "token from the other scheme of the host": f"https://127.0.0.1:{live.port}",
    }.get(how)
    token = {"bad token": "sb_nope"}.get(how, admin_token if "token from" in how else None)
    with pytest.raises(InvalidStatus) as refused:
        await wc.connect(live.ws_url, token=token, origin=origin, cookie=cookie)
    assert refused.value.response.status_code == 403


async def test_a_staff_browser_session_with_its_origin_connects(live, admin_user):
    from django.test import Client as DjangoClient

    browser = DjangoClient()
    await sync_to_async(browser.force_login)(admin_user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    async with await wc.connect(
        live.ws_url, origin=f"http://127.0.0.1:{live.port}", cookie=cookie
    ) as ws:
        reply = await wc.subscribe(ws, "sessions")
        assert reply["snapshot"]["sessions"] == []


async def test_a_silent_connection_is_dropped_and_a_pinging_one_is_kept(fresh_server, admin_token):
    srv = fresh_server(SWITCHBOARD_IDLE_TIMEOUT="2")
    async with (
        await wc.connect(srv.ws_url, admin_token) as quiet,
        await wc.connect(srv.ws_url, admin_token) as chatty,
    ):
        for _ in range(8):
            await wc.send(chatty, {"action": "ping"})
            await wc.recv(chatty)
            await asyncio.sleep(0.5)
        with pytest.raises(ConnectionClosed) as closed:
            await wc.recv(quiet, timeout=5)
        assert closed.value.rcvd.code == 4408
        await wc.send(chatty, {"action": "ping", "id": "alive"})
        assert (await wc.recv(chatty))["id"] == "alive"


async def test_a_subscription_held_longer_than_redis_timeouts_still_gets_events(live, admin_token):
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "patient")
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"session:{session['id']}")
        await asyncio.sleep(6.5)
        await asyncio.to_thread(api.update_session, session["id"], status="running")
        frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "session.update")
        assert frame["data"]["status"] == "running"


async def test_replay_events_from_another_process_reaches_subscribers(live, admin_token, tmp_path):
    """With Redis the replay is seen live; with the in-memory layer (one process
    only) the server finds the new events in the database within a second."""
    import os
    import subprocess
    import sys

    from conftest import ROOT, database_url

    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "replayed live", None, "replay-live")
    task = await asyncio.to_thread(api.create_task, session["id"], "step")
    lines = [
        {"event": "progress.update", "session": "replay-live", "task": task["id"],
         "data": {"progress": p, "message": f"at {p}"}}
        for p in (25, 50, 75)
    ]  # fmt: skip
    path = tmp_path / "live.jsonl"
    path.write_text("".join(__import__("json").dumps(line) + "\n" for line in lines))
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"session:{session['id']}")
        env = {**os.environ, "DATABASE_URL": await sync_to_async(database_url)()}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "manage.py", "replay_events", str(path), "--speed", "0"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        if not os.environ.get("REDIS_URL"):
            assert "within a second" in done.stderr
        frames = events_of(await wc.drain(ws, quiet=2.5))
        progress = [f["data"]["progress"] for f in frames if f["event"] == "progress.update"]
        assert progress == [25, 50, 75]


async def test_stats_count_the_connections_of_every_server_process(live, fresh_server, admin_token):
    other = fresh_server()
    async with (
        await wc.connect(live.ws_url, admin_token) as one,
        await wc.connect(other.ws_url, admin_token) as two,
    ):
        await wc.subscribe(one, "sessions")
        await wc.subscribe(two, "sessions")
        await wc.subscribe(two, "tasks")
        api = live.client(admin_token)
        expected = {"sessions": 2, "tasks": 1}
        for _ in range(60):  # each process reports every 5 s; closing sockets are counted out
            stats = await asyncio.to_thread(api.request, "GET", "stats")
            if stats["connections"] == 2 and stats["subscriptions"] == expected:
                break
            await asyncio.sleep(0.25)
        assert len(stats["processes"]) == 2
        assert stats["connections"] == 2 and stats["connections_total"] >= 2, stats
        assert stats["subscriptions"] == expected and stats["channels"] == 2
        assert stats["messages_sent"] >= 3


async def test_stats_show_a_user_only_the_channels_they_may_subscribe_to(
    live, admin_token, worker_token
):
    admin = live.client(admin_token)
    worker = live.client(worker_token)
    theirs = await asyncio.to_thread(admin.create_session, "staff only")
    mine = await asyncio.to_thread(worker.create_session, "mine")
    task = await asyncio.to_thread(worker.create_task, mine["id"], "step")
    async with (
        await wc.connect(live.ws_url, admin_token) as staff,
        await wc.connect(live.ws_url, worker_token) as own,
    ):
        for channel in ("system", f"session:{theirs['id']}", f"logs:{theirs['id']}"):
            await wc.subscribe(staff, channel)
        for channel in (f"session:{mine['id']}", f"task:{task['id']}", "sessions"):
            await wc.subscribe(own, channel)
        everything = {
            "system", f"session:{theirs['id']}", f"logs:{theirs['id']}",
            f"session:{mine['id']}", f"task:{task['id']}", "sessions",
        }  # fmt: skip
        for _ in range(60):
            stats = await asyncio.to_thread(admin.request, "GET", "stats")
            if set(stats["subscriptions"]) == everything:
                break
            await asyncio.sleep(0.25)
        assert set(stats["subscriptions"]) == everything
        seen = await asyncio.to_thread(worker.request, "GET", "stats")
        own_channels = {f"session:{mine['id']}", f"task:{task['id']}", "sessions"}
        assert set(seen["subscriptions"]) == own_channels and seen["channels"] == 3
        for process in seen["processes"]:
            assert set(process["subscriptions"]) <= own_channels
        assert seen["connections"] == stats["connections"]


async def test_frames_are_deflated_only_where_the_server_allows_it(fresh_server, admin_token):
    """permessage-deflate is negotiated with SWITCHBOARD_WS_COMPRESSION on, not
    without; either way a log batch arrives whole."""
    for setting, negotiated in (("on", True), ("off", False)):
        server = fresh_server(SWITCHBOARD_WS_COMPRESSION=setting)
        api = server.client(admin_token)
        session = await asyncio.to_thread(api.create_session, f"deflate {setting}")
        async with await wc.connect(server.ws_url, admin_token) as ws:
            assert bool(ws.protocol.extensions) is negotiated, ws.protocol.extensions
            await wc.subscribe(ws, f"logs:{session['id']}")
            lines = [{"message": f"line {n} " + "x" * 100} for n in range(300)]
            await asyncio.to_thread(api.log, session["id"], lines)
            frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "log.append")
        assert [e["message"] for e in frame["data"]["entries"]] == [e["message"] for e in lines]
        server.stop()

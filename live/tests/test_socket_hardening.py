"""Hostile frames and revoked identities over a real daphne and a real client;
what a deleted session leaves for its owner on resume."""

import asyncio
import json
import random

import pytest
from channels.db import database_sync_to_async as db
from websockets.exceptions import ConnectionClosed

from live.tests import wsclient as wc
from sessions_app import services

pytestmark = pytest.mark.timeout(180)

# Close codes the contract names; anything else from the server is a failure.
NAMED_CLOSES = {1000, 4013, 4401, 4408, 4413, 4429, 4503}


async def test_frames_json_cannot_carry_come_back_as_invalid_json(live, admin_token):
    deep = '{"action": "ping", "ts": ' + "[" * 5000 + "]" * 5000 + "}"
    async with await wc.connect(live.ws_url, admin_token) as ws:
        for text in (
            '{"action": "ping", "ts": NaN, "id": 1}',
            '{"action": "ping", "ts": Infinity}',
            '{"action": "ping", "ts": -Infinity}',
            '{"action": "ping", "ts": 1e999}',
            deep,
        ):
            await wc.send(ws, text)
            reply = await wc.recv(ws)
            assert reply["type"] == "error" and reply["code"] == "invalid_json", (text[:40], reply)
        await wc.send(ws, {"action": "ping", "ts": 1.5, "id": "ok"})
        assert await wc.recv(ws) == {"type": "pong", "id": "ok", "ts": 1.5}


def mutate(frame: str, rng: random.Random) -> str:
    chars = list(frame)
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(chars) + 1)
        choice = rng.random()
        if choice < 0.4 and chars:
            chars.pop(min(where, len(chars) - 1))
        elif choice < 0.8:
            chars.insert(where, rng.choice('{}[]":,0123456789-eE.\\ntrufalsNIy\x00\u2028é'))
        else:
            chars[min(where, len(chars) - 1) if chars else 0 : 0] = list(
                rng.choice(['"\\u0000"', "1e999", "NaN", "[[[[", '{"a":', "null", "-0", "9" * 30])
            )
    return "".join(chars)


def random_value(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "bool", "none", "list", "dict"]
    kind = rng.choice(kinds if depth < 3 else kinds[:5])
    if kind == "int":
        return rng.choice([0, -1, 1, 2**63, -(2**70), rng.randint(-1000, 10**18)])
    if kind == "float":
        return rng.choice([0.5, -1.5, 1e308, 1e-300, 3.0])
    if kind == "str":
        return rng.choice(
            ["", "sessions", "task:1", "logs:1", "system", "x" * 300, "\x00", "ö", "<b>"]
        )
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(["level", "task", "q", "x", ""]): random_value(rng, depth + 1)
        for _ in range(rng.randint(0, 3))
    }


def random_frame(rng: random.Random, channels: list[str]) -> str:
    frame = {"action": rng.choice(["subscribe", "unsubscribe", "ping", "cancel_task", "x", 1])}
    for key in rng.sample(["id", "channel", "since", "filter", "task_id", "ts", "extra"], 3):
        frame[key] = rng.choice([random_value(rng), rng.choice(channels)])
    return json.dumps(frame)


async def test_a_frame_fuzzer_gets_no_internal_error_and_no_unnamed_close(live, admin_token):
    """Random and mutated frames (bounded, seeded): each gets a reply or an
    error the contract names; the connection is never closed by the server."""
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "fuzzed")
    task = await asyncio.to_thread(api.create_task, session["id"], "target")
    channels = ["sessions", "tasks", "system", f"session:{session['id']}",
                f"task:{task['id']}", f"logs:{session['id']}", "session:999999"]  # fmt: skip
    valid = [
        {"action": "subscribe", "channel": f"logs:{session['id']}", "filter": {"level": "ERROR"}},
        {"action": "subscribe", "channel": f"session:{session['id']}", "since": 1},
        {"action": "ping", "ts": 123},
        {"action": "unsubscribe", "channel": "sessions"},
        {"action": "cancel_task", "task_id": task["id"]},
    ]
    rng = random.Random(20261122)
    sent = codes = 0
    seen_codes: dict[str, int] = {}
    async with await wc.connect(live.ws_url, admin_token) as ws:
        for n in range(600):
            if n % 2:
                text = random_frame(rng, channels)
            else:
                text = mutate(json.dumps(rng.choice(valid)), rng)
            await wc.send(ws, text)
            sent += 1
            if n % 50 == 49:  # stay under the rate limit
                await asyncio.sleep(0.3)
        await wc.send(ws, {"action": "ping", "id": "end"})
        try:
            while True:
                frame = await wc.recv(ws, timeout=20)
                if frame.get("type") == "error":
                    codes += 1
                    seen_codes[frame["code"]] = seen_codes.get(frame["code"], 0) + 1
                    assert frame["code"] != "internal", frame
                if frame.get("id") == "end":
                    break
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in NAMED_CLOSES, closed
            raise
    assert sent == 600 and codes > 100, seen_codes
    assert "frame failed" not in live.logs()


async def test_a_deleted_token_loses_its_socket_within_seconds(fresh_server, admin_user):
    from conftest import make_token
    from live.models import ApiToken

    server = fresh_server(SWITCHBOARD_IDENTITY_CHECK_SECONDS="1")
    token = await db(make_token)(admin_user)
    keep = await db(make_token)(admin_user)
    async with (
        await wc.connect(server.ws_url, token) as doomed,
        await wc.connect(server.ws_url, keep) as kept,
    ):
        await wc.subscribe(doomed, "sessions")
        await wc.subscribe(kept, "sessions")
        prefix = token[:10]
        await db(lambda: ApiToken.objects.filter(prefix=prefix).delete())()
        with pytest.raises(ConnectionClosed) as closed:
            await wc.recv_until(doomed, lambda f: False, timeout=10)
        assert closed.value.rcvd.code == 4401
        await wc.send(kept, {"action": "ping", "id": "still here"})
        assert (await wc.recv(kept))["id"] == "still here"


async def test_a_deactivated_user_loses_its_sockets(fresh_server, worker_user, worker_token):
    server = fresh_server(SWITCHBOARD_IDENTITY_CHECK_SECONDS="1")
    async with await wc.connect(server.ws_url, worker_token) as ws:
        await wc.subscribe(ws, "sessions")
        worker_user.is_active = False
        await db(worker_user.save)()
        with pytest.raises(ConnectionClosed) as closed:
            await wc.recv_until(ws, lambda f: False, timeout=10)
        assert closed.value.rcvd.code == 4401


async def test_a_logged_out_or_demoted_browser_loses_its_socket(fresh_server, admin_user):
    from django.contrib.auth import get_user_model
    from django.test import Client as DjangoClient

    server = fresh_server(SWITCHBOARD_IDENTITY_CHECK_SECONDS="1")
    staff = await db(get_user_model().objects.create_user)("staffer", password="pw", is_staff=True)

    def cookie_for(user) -> tuple[str, DjangoClient]:
        client = DjangoClient()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}", client

    origin = f"http://127.0.0.1:{server.port}"
    cookie_one, browser_one = await db(cookie_for)(admin_user)
    cookie_two, _ = await db(cookie_for)(staff)
    async with (
        await wc.connect(server.ws_url, origin=origin, cookie=cookie_one) as one,
        await wc.connect(server.ws_url, origin=origin, cookie=cookie_two) as two,
    ):
        await wc.subscribe(one, "sessions")
        await wc.subscribe(two, "sessions")
        await db(browser_one.logout)()  # the session row goes
        staff.is_staff = False
        await db(staff.save)()
        for ws in (one, two):
            with pytest.raises(ConnectionClosed) as closed:
                await wc.recv_until(ws, lambda f: False, timeout=10)
            assert closed.value.rcvd.code == 4401


async def test_an_owner_learns_of_a_deleted_session_on_resume_and_from_events(
    live, worker_user, worker_token, other_user
):
    from conftest import make_token
    from sessions_app.models import Session

    session = (await db(services.create_session)(name="to go", owner=worker_user))[0]
    task = (await db(services.create_task)(session.pk, name="its task"))[0]
    async with await wc.connect(live.ws_url, worker_token) as ws:
        cursor = (await wc.subscribe(ws, "sessions"))["seq"]
        tasks_cursor = (await wc.subscribe(ws, "tasks"))["seq"]
        own_cursor = (await wc.subscribe(ws, f"session:{session.pk}"))["seq"]
        task_cursor = (await wc.subscribe(ws, f"task:{task.pk}"))["seq"]
    await db(lambda: Session.objects.filter(pk=session.pk).delete())()
    async with await wc.connect(live.ws_url, worker_token) as ws:
        # Its own channels, resumed, end with the deletion (not invalid_channel).
        await wc.subscribe(ws, f"session:{session.pk}", since=own_cursor)
        frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "session.deleted")
        assert frame["channel"] == f"session:{session.pk}"
        await wc.subscribe(ws, f"task:{task.pk}", since=task_cursor)
        frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "task.deleted")
        assert frame["data"] == {"id": str(task.pk), "session_id": str(session.pk)}
        # A fresh subscription to a session that is gone is still refused.
        await wc.send(ws, {"action": "subscribe", "channel": f"session:{session.pk}", "id": 1})
        assert (await wc.recv(ws))["code"] == "invalid_channel"
    # Nobody else learns of it.
    other = await db(make_token)(other_user)
    async with await wc.connect(live.ws_url, other) as ws:
        await wc.send(
            ws, {"action": "subscribe", "channel": f"session:{session.pk}", "since": 0, "id": 1}
        )
        assert (await wc.recv(ws))["code"] == "invalid_channel"
    async with await wc.connect(live.ws_url, worker_token) as ws:
        await wc.subscribe(ws, "sessions", since=cursor)
        frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "session.deleted")
        assert frame["data"]["id"] == str(session.pk)
        await wc.subscribe(ws, "tasks", since=tasks_cursor)
        frame, _ = await wc.recv_until(
            ws, lambda f: f.get("event") == "session.deleted" and f["channel"] == "tasks"
        )
        assert frame["data"]["session_id"] == str(session.pk)
    api = live.client(worker_token)
    listed = await asyncio.to_thread(api.request, "GET", f"events?since={cursor}")
    assert "session.deleted" in [f["event"] for f in listed["results"]]
    shared = await asyncio.to_thread(api.request, "GET", f"events?channel=sessions&since={cursor}")
    assert [f["event"] for f in shared["results"]] == ["session.deleted"]
    own = await asyncio.to_thread(
        api.request, "GET", f"events?channel=session:{session.pk}&since={own_cursor}"
    )
    assert [f["event"] for f in own["results"]] == ["session.deleted"]


async def test_a_full_server_tells_a_new_socket_when_to_come_back(fresh_server, admin_token):
    server = fresh_server(SWITCHBOARD_MAX_CONNECTIONS="2", SWITCHBOARD_RETRY_AFTER="7")
    async with (
        await wc.connect(server.ws_url, admin_token) as one,
        await wc.connect(server.ws_url, admin_token) as two,
    ):
        await wc.subscribe(one, "sessions")
        await wc.subscribe(two, "sessions")
        async with await wc.connect(server.ws_url, admin_token) as third:
            frame = await wc.recv(third)
            assert frame == {
                "type": "error",
                "code": "overloaded",
                "message": "this server has 2 sockets; come back later",
                "retry_after": 7,
            }
            with pytest.raises(ConnectionClosed) as closed:
                await wc.recv(third)
            assert closed.value.rcvd.code == 4013
        await wc.send(one, {"action": "ping", "id": "still here"})
        assert (await wc.recv(one))["id"] == "still here"
    # Room again once they leave (the server hears of the closes within moments).
    for _ in range(50):
        async with await wc.connect(server.ws_url, admin_token) as again:
            await wc.send(again, {"action": "subscribe", "channel": "sessions", "id": "s"})
            if (await wc.recv(again))["type"] == "subscribed":
                break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the server stayed full after its sockets left")


async def test_an_unknown_path_is_refused_and_huge_numbers_are_named(live, admin_token):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        await wc.connect(live.ws_url + "nope/", admin_token)
    assert refused.value.response.status_code == 403
    async with await wc.connect(live.ws_url, admin_token) as ws:
        for since in ("9" * 5000, 2**64, "1.5", 1.5, -1, "١٢"):
            await wc.send(ws, {"action": "subscribe", "channel": "sessions", "since": since})
            reply = await wc.recv(ws)
            assert (reply["code"], reply["field"]) == ("invalid_action", "since"), (since, reply)
        for task_id in ("9" * 5000, 2.5):
            await wc.send(ws, {"action": "cancel_task", "task_id": task_id})
            reply = await wc.recv(ws)
            assert (reply["code"], reply["field"]) == ("invalid_action", "task_id"), reply
        assert (await wc.subscribe(ws, "sessions", since="0"))["seq"] == 0


async def test_a_permission_taken_away_reaches_an_open_socket_within_seconds(
    fresh_server, worker_user, worker_token, other_user
):
    from django.contrib.auth.models import Permission

    server = fresh_server(SWITCHBOARD_IDENTITY_CHECK_SECONDS="1")
    view = await db(Permission.objects.get)(
        codename="view_session", content_type__app_label="sessions_app"
    )
    await db(worker_user.user_permissions.add)(view)
    theirs = (await db(services.create_session)(name="theirs", owner=other_user))[0]
    mine = (await db(services.create_session)(name="mine", owner=worker_user))[0]
    async with await wc.connect(server.ws_url, worker_token) as ws:
        await wc.subscribe(ws, f"session:{theirs.pk}")
        await wc.subscribe(ws, "sessions")
        await db(services.update_session)(theirs.pk, name="seen")
        frame, _ = await wc.recv_until(ws, lambda f: f.get("channel") == "sessions")
        assert frame["data"]["name"] == "seen"
        await db(worker_user.user_permissions.remove)(view)
        error, _ = await wc.recv_until(ws, lambda f: f.get("type") == "error", timeout=10)
        assert error["code"] == "invalid_channel" and error["channel"] == f"session:{theirs.pk}"
        await db(services.update_session)(theirs.pk, name="hidden now")
        await db(services.update_session)(mine.pk, name="still mine")
        frame, before = await wc.recv_until(
            ws, lambda f: f.get("data", {}).get("name") == "still mine"
        )
        assert "hidden now" not in json.dumps(before)
        await wc.send(ws, {"action": "subscribe", "channel": f"session:{theirs.pk}", "id": 9})
        assert (await wc.recv(ws))["code"] == "invalid_channel"

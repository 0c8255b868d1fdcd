"""No frame silences a socket: values that could make one too large or not
valid Unicode are refused where they come in, snapshots are cut to fit, and
anything that still would not fit (a write that went around the API) is sent
as a notice of what to load over HTTP. Over a real daphne and a real client."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async as db
from django.db import connection

from live import frames
from live.tests import wsclient as wc
from sessions_app import services
from sessions_app.models import Session

pytestmark = pytest.mark.timeout(120)


async def still_answers(ws, marker: str) -> None:
    """The socket still answers a ping (it was not silenced)."""
    await wc.send(ws, {"action": "ping", "id": marker, "ts": 1})
    reply, _ = await wc.recv_until(ws, lambda f: f.get("id") == marker)
    assert reply == {"type": "pong", "id": marker, "ts": 1}


async def test_a_ping_or_an_id_that_cannot_be_echoed_is_refused_and_the_socket_goes_on(
    live, admin_token
):
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.send(ws, '{"action": "ping", "ts": "\\ud800", "id": 1}')
        reply = await wc.recv(ws)
        assert reply["type"] == "error" and reply["code"] == "invalid_json", reply
        await wc.send(ws, {"action": "ping", "ts": "x" * 300_000, "id": 2})
        reply = await wc.recv(ws)
        assert reply["code"] == "invalid_action" and reply["field"] == "ts", reply
        await wc.send(ws, {"action": "ping", "id": "i" * 300_000})
        reply = await wc.recv(ws)
        assert reply["code"] == "invalid_action" and reply["field"] == "id", reply
        assert "id" not in reply
        await still_answers(ws, "after")


async def test_a_frame_over_the_limit_becomes_a_notice_of_what_to_load(live, admin_token):
    """A session written around the API (an ORM save, as a shell or a migration
    would) with 1.1 MB of metadata: its session.update would be over daphne's
    limit. The socket gets a notice with the same seq and where to load it."""
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, "sessions")
        session = await db(Session.objects.create)(name="big", metadata={"x": "y" * 1_100_000})
        notice, _ = await wc.recv_until(ws, lambda f: f.get("event") == "session.update")
        assert notice["data"] is None and notice["channel"] == "sessions"
        assert notice["omitted"]["reason"] == "too_large"
        assert notice["omitted"]["bytes"] > frames.FRAME_LIMIT
        load = notice["omitted"]["load"]
        assert load.startswith("/api/v1/events?channel=sessions&since=")
        await still_answers(ws, "after notice")
        api = live.client(admin_token)
        whole = await asyncio.to_thread(api.request, "GET", load.removeprefix("/api/v1/"))
        assert whole["results"][0]["seq"] == notice["seq"]
        assert whole["results"][0]["data"]["id"] == str(session.pk)
        # A new subscriber's snapshot leaves out what does not fit, and says so.
        async with await wc.connect(live.ws_url, admin_token) as other:
            reply = await wc.subscribe(other, "sessions")
            assert reply["snapshot"]["truncated"] is True
            assert str(session.pk) not in [s["id"] for s in reply["snapshot"]["sessions"]]
            await still_answers(other, "after snapshot")


async def test_snapshots_are_cut_to_fit_a_frame(live, admin_token, admin_user):
    session = (await db(services.create_session)(name="wide", owner=admin_user))[0]
    api = live.client(admin_token)
    for n in range(20):
        task = await asyncio.to_thread(api.create_task, session.pk, f"t{n}")
        await asyncio.to_thread(api.update_task, task["id"], details={"pad": "d" * 60_000})
    async with await wc.connect(live.ws_url, admin_token) as ws:
        reply = await wc.subscribe(ws, f"session:{session.pk}")
        snapshot = reply["snapshot"]
        assert snapshot["tasks_truncated"] is True and 0 < len(snapshot["tasks"]) < 20
        assert len(json.dumps(reply)) < frames.FRAME_LIMIT
        await still_answers(ws, "after")


async def test_long_log_lines_travel_in_frames_that_fit(live, admin_token, admin_user):
    session = (await db(services.create_session)(name="long lines", owner=admin_user))[0]
    api = live.client(admin_token)
    lines = [{"message": f"{n}:" + "z" * 250_000} for n in range(4)]
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"logs:{session.pk}")
        await asyncio.to_thread(api.log, session.pk, lines)
        got = []
        while len(got) < 4:
            frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "log.append")
            assert frame.get("omitted") is None
            got += [e["message"] for e in frame["data"]["entries"]]
        assert got == [line["message"] for line in lines]
        await still_answers(ws, "after")


async def test_a_lone_surrogate_written_around_the_api_does_not_silence_anyone(
    live, admin_token, admin_user
):
    """The API refuses lone surrogates (test_hostile_values); a value stored
    some other way still goes out, escaped, where the database kept it."""
    session = (await db(services.create_session)(name="text", owner=admin_user))[0]
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, "sessions")

        def save():
            Session.objects.filter(pk=session.pk).update(name="ok")
            stored = Session.objects.get(pk=session.pk)
            stored.metadata = {"k": "\udc00"}
            stored.save()

        if connection.vendor == "postgresql":
            with pytest.raises(Exception):  # noqa: B017 - jsonb refuses it: nothing is stored
                await db(save)()
            await still_answers(ws, "after refusal")
            return
        await db(save)()
        frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "session.update")
        assert frame["data"]["metadata"] == {"k": "\udc00"}
        await still_answers(ws, "after")
        async with await wc.connect(live.ws_url, admin_token) as other:
            reply = await wc.subscribe(other, "sessions")
            assert reply["snapshot"]["sessions"][0]["metadata"] == {"k": "\udc00"}
            await still_answers(other, "after snapshot")

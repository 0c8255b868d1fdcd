"""The logs:<session_id> stream in the consumer, through WebsocketCommunicator
with real transactions: per-subscriber filters and the flood budget."""

import pytest
from channels.db import database_sync_to_async

from live import events
from live.tests.test_consumer import connect, next_event, subscribe
from logs_app import services as log_services
from sessions_app import services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

db = database_sync_to_async


async def test_each_log_subscriber_gets_its_own_filter_from_one_write(admin_token, admin_user):
    session = (await db(services.create_session)(name="s", owner=admin_user))[0]
    task = (await db(services.create_task)(session.pk, name="t"))[0]
    everything, errors, keyword = [await connect(admin_token) for _ in range(3)]
    channel = f"logs:{session.pk}"
    await subscribe(everything, channel)
    await subscribe(errors, channel, filter={"level": "ERROR", "task": str(task.pk)})
    await subscribe(keyword, channel, filter={"q": "DISK"})
    before = await db(events.newest_seq)()
    await db(log_services.append_entries)(
        session.pk,
        [
            {"message": "all good", "level": 20},
            {"message": "disk is full", "level": 40, "task_id": task.pk},
            {"message": "error elsewhere", "level": 40},
        ],
    )
    assert await db(events.newest_seq)() == before + 1  # one event for the batch
    got = {}
    for name, ws in (("all", everything), ("errors", errors), ("keyword", keyword)):
        frame = await next_event(ws, "log.append")
        got[name] = [e["message"] for e in frame["data"]["entries"]]
        assert frame["seq"] == before + 1
    assert got == {
        "all": ["all good", "disk is full", "error elsewhere"],
        "errors": ["disk is full"],
        "keyword": ["disk is full"],
    }
    for ws in (everything, errors, keyword):
        await ws.disconnect()


async def test_a_log_flood_is_skipped_with_a_notice_naming_exactly_the_lines(
    admin_token, admin_user, settings
):
    settings.SWITCHBOARD = {
        **settings.SWITCHBOARD,
        "LOG_LINES_PER_SECOND": 1,
        "LOG_LINES_BURST": 10,
    }
    session = (await db(services.create_session)(name="flood", owner=admin_user))[0]
    ws = await connect(admin_token)
    await subscribe(ws, f"logs:{session.pk}")
    batches = [
        [{"message": f"b{b} l{n}", "level": 40 if n == 0 else 20} for n in range(10)]
        for b in range(3)
    ]
    for batch in batches:
        await db(log_services.append_entries)(session.pk, batch)
    first = await next_event(ws, "log.append")
    assert [e["message"] for e in first["data"]["entries"]] == [f"b0 l{n}" for n in range(10)]
    notice = await next_event(ws, "log.skipped", timeout=5)
    assert notice["data"]["count"] == 20 and notice["data"]["errors"] == 2
    assert notice["seq"] > first["seq"]
    page = await db(log_services.query)(
        session.pk,
        log_services.LogFilter(),
        limit=notice["data"]["count"],
        after=int(notice["data"]["first_id"]) - 1,
        before=int(notice["data"]["last_id"]) + 1,
    )
    assert [e["message"] for e in page.entries] == [f"b{b} l{n}" for b in (1, 2) for n in range(10)]
    await ws.disconnect()


async def test_a_filter_task_that_is_not_a_whole_number_is_refused_not_rounded(
    admin_token, admin_user
):
    session = (await db(services.create_session)(name="s", owner=admin_user))[0]
    ws = await connect(admin_token)
    for task in (1.5, "1.5", True, "9" * 30, 0):
        await ws.send_json_to(
            {"action": "subscribe", "channel": f"logs:{session.pk}", "filter": {"task": task}}
        )
        reply = await ws.receive_json_from()
        assert reply["type"] == "error" and reply["field"] == "filter", (task, reply)
        assert reply["code"] == "invalid_action"
    reply = await subscribe(ws, f"logs:{session.pk}", filter={"task": 1.0})
    assert reply["filter"]["task"] == "1"
    await ws.disconnect()

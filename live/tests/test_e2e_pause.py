"""Pause and resume over a real daphne socket: ack, then a task.update naming
who acted (`by`), live and on resume."""

import asyncio

import pytest

from live.tests import wsclient as wc

pytestmark = pytest.mark.timeout(180)


async def test_pause_and_resume_over_the_socket_are_acked_then_seen_with_their_actor(
    live, admin_token
):
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "pause")
    task = await asyncio.to_thread(api.create_task, session["id"], "busy")
    await asyncio.to_thread(api.update_task, task["id"], status="running")
    async with await wc.connect(live.ws_url, admin_token) as ws:
        # Not subscribed: the task.update still follows the ack.
        await wc.send(ws, {"action": "pause_task", "task_id": task["id"], "id": 1})
        ack = await wc.recv(ws)
        assert ack == {**ack, "type": "ack", "action": "pause_task", "id": 1, "changed": True}
        assert ack["pause_requested"] is True and ack["status"] == "running"
        update = await wc.recv(ws)
        assert update["event"] == "task.update" and update["data"]["pause_requested"] is True
        assert update["data"]["by"] == "admin" and update["data"]["action"] == "pause"
        # The worker sees it in the API's answers.
        reply = await asyncio.to_thread(api.progress, task["id"], 10)
        assert reply["pause_requested"] is True

        await wc.send(ws, {"action": "pause_task", "task_id": task["id"], "id": 2})
        ack, _ = await wc.recv_until(ws, lambda f: f.get("id") == 2)
        assert ack["changed"] is False and ack["pause_requested"] is True

        reply = await wc.subscribe(ws, f"session:{session['id']}")
        cursor = reply["seq"]
        await wc.send(ws, {"action": "resume_task", "task_id": task["id"], "id": 3})
        ack, _ = await wc.recv_until(ws, lambda f: f.get("id") == 3)
        assert ack["action"] == "resume_task" and ack["pause_requested"] is False
        update, _ = await wc.recv_until(ws, lambda f: f.get("event") == "task.update")
        assert update["channel"] == f"session:{session['id']}"
        assert (update["data"]["by"], update["data"]["action"]) == ("admin", "resume")

        # Refusals: a missing task_id, an ended task.
        await wc.send(ws, {"action": "pause_task", "id": 4})
        error, _ = await wc.recv_until(ws, lambda f: f.get("id") == 4)
        assert error["code"] == "invalid_action" and error["field"] == "task_id"
        await asyncio.to_thread(api.update_task, task["id"], status="completed")
        await wc.send(ws, {"action": "pause_task", "task_id": task["id"], "id": 5})
        error, _ = await wc.recv_until(ws, lambda f: f.get("id") == 5)
        assert error["code"] == "conflict" and "completed" in error["message"]

    # On resume: the actions after the cursor come again, naming their actor.
    await asyncio.to_thread(api.request, "POST", f"tasks/{task['id']}/retry", {})
    async with await wc.connect(live.ws_url, admin_token) as ws:
        reply = await wc.subscribe(ws, f"session:{session['id']}", since=cursor)
        assert reply["seq"] == cursor
        frames = [f for f in await wc.drain(ws, quiet=1.0) if f.get("type") == "event"]
        acted = [(f["data"]["action"], f["data"]["by"]) for f in frames if "by" in f["data"]]
        assert acted == [("resume", "admin"), ("retry", "admin")]


async def test_another_users_task_cannot_be_paused_over_the_socket(live, admin_token, other_token):
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "not yours")
    task = await asyncio.to_thread(api.create_task, session["id"], "t")
    async with await wc.connect(live.ws_url, other_token) as ws:
        for number, action in enumerate(("pause_task", "resume_task"), start=1):
            await wc.send(ws, {"action": action, "task_id": task["id"], "id": number})
            error = await wc.recv(ws)
            assert error["id"] == number and error["code"] == "not_found"
    assert (await asyncio.to_thread(api.get_task, task["id"]))["pause_requested"] is False

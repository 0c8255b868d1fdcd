"""Through real server processes: a worker's session ends by itself once its
task has ended, a `sessions` subscriber sees it, and it happens once."""

import asyncio
import time

import pytest

from live.models import Event
from live.tests import wsclient as wc

pytestmark = pytest.mark.timeout(120)


async def test_a_workers_session_ends_by_itself_once_and_its_subscriber_sees_it(
    fresh_server, admin_token
):
    one, two = (
        fresh_server(SWITCHBOARD_SESSION_SETTLE="1"),
        fresh_server(SWITCHBOARD_SESSION_SETTLE="1"),
    )
    api = one.client(admin_token)
    async with await wc.connect(two.ws_url, admin_token) as ws:
        await wc.subscribe(ws, "sessions")
        session = await asyncio.to_thread(api.create_session, "worker", status="running")
        task = await asyncio.to_thread(api.create_task, session["id"], "step")
        await asyncio.to_thread(api.update_task, task["id"], progress=50)
        await asyncio.to_thread(api.update_task, task["id"], status="failed", error="boom")
        started = time.monotonic()
        frame, _ = await wc.recv_until(
            ws,
            lambda f: (
                f.get("event") == "session.update"
                and f["data"]["id"] == session["id"]
                and f["data"]["status"] != "running"
            ),
            timeout=15,
        )
        waited = time.monotonic() - started
    assert frame["data"]["status"] == "failed", frame
    assert frame["data"]["failed_tasks"] == 1 and frame["data"]["finished_at"], frame
    assert 0.5 < waited < 1 + 5, waited
    # Both processes looked; the session ended once.
    await asyncio.sleep(2.5)
    ends = await asyncio.to_thread(
        lambda: Event.objects.filter(
            session_id=int(session["id"]), kind="session.update", data__status="failed"
        ).count()
    )
    assert ends == 1
    # Ended is ended: a task added later reopens nothing.
    await asyncio.to_thread(api.create_task, session["id"], "late")
    assert (await asyncio.to_thread(api.get_session, session["id"]))["status"] == "failed"


async def test_a_session_with_a_task_still_running_stays_running(fresh_server, admin_token):
    srv = fresh_server(SWITCHBOARD_SESSION_SETTLE="1")
    api = srv.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "worker", status="running")
    done = await asyncio.to_thread(api.create_task, session["id"], "first")
    body = {"name": "second", "status": "running"}
    await asyncio.to_thread(api.request, "POST", f"sessions/{session['id']}/tasks", body)
    await asyncio.to_thread(api.update_task, done["id"], status="completed")
    await asyncio.sleep(4)
    assert (await asyncio.to_thread(api.get_session, session["id"]))["status"] == "running"

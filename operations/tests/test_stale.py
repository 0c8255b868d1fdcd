"""Lost workers: a running task whose worker stops reporting fails by itself,
once, however many server processes look, and a late report is told so."""

import asyncio
import time

import pytest
from switchboard_client import SwitchboardError

from live.models import Event
from live.tests import wsclient as wc

pytestmark = pytest.mark.timeout(120)


def running_task(api, stale_after: int | None) -> tuple[dict, dict]:
    session = api.create_session("lost workers")
    body = {"name": "step", "status": "running"}
    if stale_after is not None:
        body["stale_after"] = stale_after
    task = api.request("POST", f"sessions/{session['id']}/tasks", body)
    return session, task


async def test_a_silent_task_fails_by_itself_once_and_a_late_report_is_refused(
    fresh_server, admin_token
):
    fast = {"SWITCHBOARD_STALE_CHECK_SECONDS": "0.2"}
    one, two = fresh_server(**fast), fresh_server(**fast)
    api = one.client(admin_token)
    session, task = await asyncio.to_thread(running_task, api, 2)
    _, quiet = await asyncio.to_thread(running_task, api, None)  # the default: 600 s
    assert task["stale_after"] == 2 and quiet["stale_after"] is None
    async with await wc.connect(two.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"session:{session['id']}")
        started = time.monotonic()
        frame, _ = await wc.recv_until(
            ws,
            lambda f: f.get("event") == "task.update" and f["data"]["status"] == "failed",
            timeout=15,
        )
        waited = time.monotonic() - started
    assert frame["data"]["error"].startswith("no report for 2 s"), frame
    assert frame["data"]["lost"] is True, frame
    assert 1.0 < waited < 6, waited
    # Both processes looked; the failure was recorded once.
    await asyncio.sleep(1)
    failures = await asyncio.to_thread(
        lambda: Event.objects.filter(
            task_id=int(task["id"]), kind="task.update", data__status="failed"
        ).count()
    )
    assert failures == 1
    assert (await asyncio.to_thread(api.get_task, quiet["id"]))["status"] == "running"

    # The worker comes back: a clear 409, nothing resurrected.
    for method, path, body in (
        ("PATCH", f"tasks/{task['id']}", {"progress": 50}),
        ("POST", f"tasks/{task['id']}/output", {"chunk": "late"}),
    ):
        with pytest.raises(SwitchboardError) as refused:
            await asyncio.to_thread(api.request, method, path, body)
        assert refused.value.status == 409
        assert "no report for 2 s" in str(refused.value.body) and "retry" in str(refused.value.body)
    assert (await asyncio.to_thread(api.get_task, task["id"]))["status"] == "failed"
    retried = await asyncio.to_thread(api.request, "POST", f"tasks/{task['id']}/retry")
    assert retried["status"] == "pending" and retried["attempt"] == 2
    assert retried["lost"] is False
    assert (await asyncio.to_thread(api.update_task, task["id"], progress=10))["progress"] == 10


async def test_a_task_that_only_logs_or_streams_output_is_not_lost(fresh_server, admin_token):
    srv = fresh_server(SWITCHBOARD_STALE_CHECK_SECONDS="0.2")
    api = srv.client(admin_token)
    session, logging_task = await asyncio.to_thread(running_task, api, 2)
    _, streaming_task = await asyncio.to_thread(
        lambda: running_task(api, 2)
    )  # another session, same rule
    for n in range(12):  # 4.8 s: more than twice the limit
        await asyncio.to_thread(
            api.log, session["id"], [{"message": f"line {n}", "task_id": logging_task["id"]}]
        )
        await asyncio.to_thread(
            api.request, "POST", f"tasks/{streaming_task['id']}/output", {"chunk": f"{n} "}
        )
        await asyncio.sleep(0.4)
    for task in (logging_task, streaming_task):
        assert (await asyncio.to_thread(api.get_task, task["id"]))["status"] == "running"
    # Silence, then it goes.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (await asyncio.to_thread(api.get_task, logging_task["id"]))["status"] == "failed":
            break
        await asyncio.sleep(0.2)
    assert (await asyncio.to_thread(api.get_task, logging_task["id"]))["status"] == "failed"


def test_stale_after_is_checked_and_can_be_changed(db, admin_token):
    from django.test import Client

    http = Client(headers={"Authorization": f"Bearer {admin_token}"})
    session = http.post("/api/v1/sessions", {"name": "s"}, content_type="application/json").json()
    path = f"/api/v1/sessions/{session['id']}/tasks"
    for bad in (0, -5, 1.5, "x"):
        answer = http.post(path, {"name": "t", "stale_after": bad}, content_type="application/json")
        assert answer.status_code == 400 and "stale_after" in answer.json()["errors"], bad
    task = http.post(path, {"name": "t"}, content_type="application/json").json()
    changed = http.patch(
        f"/api/v1/tasks/{task['id']}", {"stale_after": 30}, content_type="application/json"
    ).json()
    assert changed["stale_after"] == 30

"""Agent runs: typed status steps beside streamed output, in order with the
chunks, live and on resume, checked at the edge."""

import asyncio

import pytest
from django.test import Client as DjangoClient
from switchboard_client import Client as SwitchboardClient

from conftest import post
from live.tests import wsclient as wc
from sessions_app import eventfiles, exporting, output, services

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def http(admin_token):
    return DjangoClient(headers={"Authorization": f"Bearer {admin_token}"})


@pytest.mark.django_db(transaction=True)
def test_steps_and_chunks_read_back_in_order_and_bad_steps_are_400(http):
    session = post(http, "sessions", {"name": "agent"})[1]
    task = post(http, f"sessions/{session['id']}/tasks", {"name": "answer"})[1]
    path = f"tasks/{task['id']}/output"
    for body in (
        {"status": "thinking", "message": "reading the question"},
        {"chunk": "The answer "},
        {"status": "tool_calling", "data": {"tool": "search", "args": {"q": "x"}}},
        {"status": "tool_completed", "data": {"tool": "search", "result": [1, 2]}},
        {"chunk": "is 42.", "final": True},
    ):
        assert post(http, path, body)[0] == 201, body
    for body, field in (
        ({"status": "Thinking"}, "status"),
        ({"status": "tool calling"}, "status"),
        ({"status": "x" * 33}, "status"),
        ({"status": "thinking", "data": [1]}, "data"),
        ({"status": "thinking", "chunk": "both"}, "body"),
        ({}, "body"),
        ({"chunk": "text", "message": "belongs to a step"}, "body"),
        ({"status": "thinking", "data": {"k": "\u0000"}}, "data"),
    ):
        status, answer = post(http, path, body)
        assert status == 400 and field in answer["errors"], (body, answer)
    output = http.get(f"/api/v1/{path}").json()
    assert output["text"] == "The answer is 42." and output["final"] is True
    steps = [(s["status"], s["at"]) for s in output["steps"]]
    assert steps == [("thinking", 0), ("tool_calling", 11), ("tool_completed", 11)]
    assert output["steps"][1]["data"] == {"tool": "search", "args": {"q": "x"}}


@pytest.mark.django_db(transaction=True)
def test_steps_export_and_replay_like_every_event(tmp_path):
    session, _ = services.create_session(name="run", external_id="run-1")
    task, _ = services.create_task(session.pk, name="t", external_id="t-1")
    output.append_step(task.pk, "thinking", "hm", {"depth": 1})
    output.append_output(task.pk, "done", final=True)
    path = tmp_path / "run.jsonl"
    with path.open("w") as out:
        exporting.export(out, session_id=session.pk)
    lines = eventfiles.parse_lines(iter(path.read_text().splitlines()))
    kinds = [(line.kind, line.data.get("status") or line.data.get("chunk")) for line in lines]
    assert ("task.output", "thinking") in kinds and ("task.output", "done") in kinds
    bad = '{"event": "task.output", "session": "s", "task": "t", "data": {"status": "No Way"}}'
    with pytest.raises(eventfiles.ReplayError, match="line 1: data.status"):
        eventfiles.parse_lines(iter([bad]))


async def test_a_run_reported_through_the_client_arrives_in_order_live_and_on_resume(
    live, admin_token
):
    client = SwitchboardClient(live.url, admin_token)
    session = await asyncio.to_thread(client.create_session, "agent run")
    task = await asyncio.to_thread(client.create_task, session["id"], "answer")

    def run() -> None:
        client.status(task["id"], "thinking", "planning")
        client.output(task["id"], "Looking it up. ")
        with client.tool(task["id"], "search", q="tides") as call:
            call["result"] = {"hits": 3}
        with pytest.raises(ValueError), client.tool(task["id"], "fetch", url="x"):
            raise ValueError("timed out")
        client.output(task["id"], "Done.", final=True)

    async with await wc.connect(live.ws_url, admin_token) as ws:
        reply = await wc.subscribe(ws, f"task:{task['id']}")
        since = reply["seq"]
        await asyncio.to_thread(run)
        frames = []
        while len(frames) < 7:
            frame = await wc.recv(ws)
            if frame.get("event") == "task.output":
                frames.append(frame)
    seen = [f["data"].get("status") or f["data"]["chunk"] for f in frames]
    assert seen == [
        "thinking", "Looking it up. ", "tool_calling", "tool_completed",
        "tool_calling", "tool_completed", "Done.",
    ], seen  # fmt: skip
    assert [f["seq"] for f in frames] == sorted(f["seq"] for f in frames)
    failed = [f for f in frames if f["data"].get("data", {}).get("error")]
    assert len(failed) == 1 and failed[0]["data"]["data"]["error"] == "ValueError: timed out"
    assert frames[3]["data"]["data"]["result"] == {"hits": 3}
    assert frames[3]["data"]["data"]["seconds"] >= 0
    # A resume from before the run gets the same frames again, once each.
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"task:{task['id']}", since=since)
        again = []
        while len(again) < len(frames):
            frame = await wc.recv(ws)
            if frame.get("event") == "task.output":
                again.append(frame)
    assert [f["seq"] for f in again] == [f["seq"] for f in frames]


async def test_steps_reach_the_session_channel_and_its_snapshot_names_each_tasks_latest(
    live, admin_token
):
    client = SwitchboardClient(live.url, admin_token)
    session = await asyncio.to_thread(client.create_session, "agents")
    one = await asyncio.to_thread(client.create_task, session["id"], "one")
    two = await asyncio.to_thread(client.create_task, session["id"], "two")
    for task in (one, two):
        await asyncio.to_thread(client.update_task, task["id"], status="running")
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"session:{session['id']}")
        await asyncio.to_thread(client.status, one["id"], "thinking", "planning")
        await asyncio.to_thread(client.output, one["id"], "chunks stay on the task's channel")
        await asyncio.to_thread(client.status, two["id"], "tool_calling", tool="search")
        await asyncio.to_thread(client.status, one["id"], "tool_calling", tool="fetch")
        frames = [f for f in await wc.drain(ws) if f.get("event") == "task.output"]
    assert [(f["data"]["task_id"], f["data"]["status"]) for f in frames] == [
        (one["id"], "thinking"),
        (two["id"], "tool_calling"),
        (one["id"], "tool_calling"),
    ]
    assert all("chunk" not in f["data"] for f in frames)
    # A page opened now learns what each running task is doing.
    async with await wc.connect(live.ws_url, admin_token) as ws:
        reply = await wc.subscribe(ws, f"session:{session['id']}")
    latest = reply["snapshot"]["latest_steps"]
    assert {key: (step["status"], step["data"].get("tool")) for key, step in latest.items()} == {
        one["id"]: ("tool_calling", "fetch"),
        two["id"]: ("tool_calling", "search"),
    }
    assert latest[one["id"]]["seq"] == frames[-1]["seq"]
    # An ended task has none.
    await asyncio.to_thread(client.update_task, two["id"], status="completed")
    async with await wc.connect(live.ws_url, admin_token) as ws:
        reply = await wc.subscribe(ws, f"session:{session['id']}")
    assert set(reply["snapshot"]["latest_steps"]) == {one["id"]}


@pytest.mark.django_db(transaction=True)
def test_big_steps_are_refused_and_many_steps_keep_the_output_answer_small(http):
    session = post(http, "sessions", {"name": "agent"})[1]
    task = post(http, f"sessions/{session['id']}/tasks", {"name": "answer"})[1]
    path = f"tasks/{task['id']}/output"
    status, answer = post(http, path, {"status": "thinking", "data": {"k": "x" * (8 << 20)}})
    assert status == 400 and "data" in answer["errors"]
    for n in range(20):
        assert (
            post(http, path, {"status": "tool_calling", "data": {"n": n, "pad": "p" * 60_000}})[0]
            == 201
        )
    response = http.get(f"/api/v1/{path}")
    assert response.status_code == 200
    assert len(response.content) < 256 * 1024  # not 20 x 60 KB
    steps = response.json()["steps"]
    assert steps and [s["data"]["n"] for s in steps] == list(range(20 - len(steps), 20))

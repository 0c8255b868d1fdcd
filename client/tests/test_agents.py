"""The OpenAI Agents SDK's runs, live: the real SDK with a scripted model (no
network) runs an agent that calls two tools, one of them failing, and hands
off once; its steps, output and token totals arrive in order, on a socket as
they happen and again on resume."""

import asyncio

import pytest
from agents import Agent, RunConfig, Runner, function_tool, set_trace_processors
from agents.testing import ModelStep, assistant_message, function_call
from switchboard_client import Client
from switchboard_client.agents import SwitchboardTracingProcessor

from conftest import free_port
from live.tests import wsclient as wc
from operations.agent_demo import TracedScriptedModel, usage


@function_tool
def search(query: str) -> str:
    """Search the notes."""
    return f"3 notes on {query}"


@function_tool
def fetch(url: str) -> str:
    """Fetch a page."""
    raise RuntimeError(f"404 for {url}")


def scripted_run() -> tuple[Agent, TracedScriptedModel]:
    model = TracedScriptedModel(
        [
            ModelStep(
                output=[
                    function_call("search", {"query": "tides"}, call_id="c1"),
                    function_call("fetch", {"url": "http://notes/7"}, call_id="c2"),
                ],
                usage=usage(100, 20),
            ),
            ModelStep(
                output=[function_call("transfer_to_writer", {}, call_id="c3")], usage=usage(150, 5)
            ),
            ModelStep(output=[assistant_message("Tides follow the moon.")], usage=usage(200, 30)),
        ]
    )
    writer = Agent(name="writer", instructions="Write the answer.", model=model)
    researcher = Agent(
        name="researcher",
        instructions="Look it up, then hand off.",
        tools=[search, fetch],
        handoffs=[writer],
        model=model,
    )
    return researcher, model


def steps(frames: list[dict]) -> list[tuple]:
    return [
        (f["data"]["status"], f["data"]["data"].get("tool") or f["data"]["data"].get("agent"))
        for f in frames
        if f.get("event") == "task.output" and "status" in f["data"]
    ]


@pytest.fixture
def processor(live, admin_token):
    client = Client(live.url, admin_token)
    session = client.create_session("support bot", status="running")
    processor = SwitchboardTracingProcessor(client, session_id=session["id"])
    set_trace_processors([processor])
    yield processor, session
    set_trace_processors([])
    processor.shutdown()


async def test_an_agent_run_shows_its_steps_output_and_tokens_live_and_on_resume(
    processor, live, admin_token
):
    processor, session = processor
    agent, model = scripted_run()
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"session:{session['id']}")
        result = await Runner.run(
            agent, "Why are there tides?", run_config=RunConfig(workflow_name="tides")
        )
        assert result.final_output == "Tides follow the moon."
        model.assert_complete()
        assert await asyncio.to_thread(processor.force_flush)
        ended, live_frames = await wc.recv_until(
            ws, lambda f: f.get("event") == "task.update" and f["data"]["status"] == "completed"
        )
    # The two tools run side by side: each one's end follows its own start.
    seen = steps(live_frames)
    assert seen[:3] == [
        ("thinking", "researcher"),
        ("tool_calling", "search"),
        ("tool_calling", "fetch"),
    ]
    assert sorted(seen[3:5]) == [("tool_completed", "fetch"), ("tool_completed", "search")]
    assert seen[5:] == [
        ("thinking", "researcher"),
        ("handoff", None),
        ("thinking", "writer"),
        ("completed", None),
    ]
    by_status = {}
    for frame in live_frames:
        if frame.get("event") == "task.output" and "status" in frame["data"]:
            by_status.setdefault(
                (frame["data"]["status"], frame["data"]["data"].get("tool")), frame
            )
    assert by_status[("tool_calling", "search")]["data"]["data"]["args"] == '{"query":"tides"}'
    failed = by_status[("tool_completed", "fetch")]["data"]["data"]
    assert failed["error"].startswith("Error running tool") and "result" not in failed
    assert by_status[("tool_completed", "search")]["data"]["data"]["result"] == "3 notes on tides"
    thinking = by_status[("thinking", None)]["data"]["data"]
    assert (thinking["model"], thinking["input_tokens"], thinking["output_tokens"]) == (
        "scripted-model-1",
        100,
        20,
    )
    handoff = by_status[("handoff", None)]["data"]
    assert handoff["data"] == {"from": "researcher", "to": "writer"}
    task = ended["data"]
    assert task["name"] == "tides" and task["result"] == "Tides follow the moon."
    assert task["details"] == {
        "input_tokens": 450,
        "output_tokens": 55,
        "total_tokens": 505,
        "model_calls": 3,
    }
    # On resume, the task's channel has it all in order: the steps with the
    # output between them, each once.
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"task:{task['id']}", since=0)
        again = await wc.drain(ws)
    outputs = [f for f in again if f.get("event") == "task.output"]
    assert steps(outputs) == seen
    texts = [f["data"]["chunk"] for f in outputs if "chunk" in f["data"]]
    assert "".join(texts) == "Tides follow the moon.\n"
    order = [f["data"].get("status") or "text" for f in outputs]
    assert order.index("text") == order.index("completed") - 1
    assert [f["seq"] for f in again] == sorted({f["seq"] for f in again})


async def test_a_run_in_a_trace_group_gets_the_groups_session_and_a_failure_fails_the_task(
    live, admin_token
):
    client = Client(live.url, admin_token)
    processor = SwitchboardTracingProcessor(client)
    set_trace_processors([processor])
    try:
        model = TracedScriptedModel([RuntimeError("the model is down")])
        agent = Agent(name="helper", instructions="Help.", model=model)
        config = RunConfig(workflow_name="ask", group_id="conversation-7")
        with pytest.raises(RuntimeError):
            await Runner.run(agent, "hello", run_config=config)
        model = TracedScriptedModel([[assistant_message("Hi.")]])
        await Runner.run(
            Agent(name="helper", instructions="Help.", model=model), "hi", run_config=config
        )
        assert await asyncio.to_thread(processor.force_flush)
        # No run is under way: no reporter thread is left behind.
        assert processor._reporters == {}
    finally:
        set_trace_processors([])
        processor.shutdown()
    sessions = client.request("GET", "sessions", params={"q": "agents-group:conversation-7"})
    (session,) = sessions["results"]
    assert session["name"] == "conversation-7"
    tasks = client.request("GET", "tasks", params={"session": session["id"]})["results"]
    assert sorted(t["status"] for t in tasks) == ["completed", "failed"]
    failed = next(t for t in tasks if t["status"] == "failed")
    assert "the model is down" in failed["error"]


@pytest.mark.timeout(30)
async def test_a_run_goes_on_while_switchboard_is_away(db):
    # A client that keeps trying for 60 s: were a callback to wait for it,
    # the run would outlast this test's timeout.
    away = Client(f"http://127.0.0.1:{free_port()}", "sb_nobody", retry_for=60)
    processor = SwitchboardTracingProcessor(away, session="nowhere")
    set_trace_processors([processor])
    try:
        agent, model = scripted_run()
        result = await Runner.run(agent, "Why are there tides?")
        assert result.final_output == "Tides follow the moon."
        assert processor.force_flush(timeout=0.5) is False
    finally:
        set_trace_processors([])

"""A tool that needs a person's approval: the real Agents SDK (a scripted
model, no network) stops before the call, the question is asked on the
run's task, a person answers it, and the run goes on with the answer, in
one trace and one task."""

import asyncio
import threading

import pytest
from agents import Agent, function_tool, set_trace_processors
from agents.testing import ModelStep, assistant_message, function_call
from switchboard_client import Client
from switchboard_client.agents import SwitchboardTracingProcessor, run_with_approvals

from operations.agent_demo import TracedScriptedModel, usage


@pytest.fixture
def processor(live, admin_token):
    client = Client(live.url, admin_token)
    session = client.create_session("refunds", status="running")
    processor = SwitchboardTracingProcessor(client, session_id=session["id"])
    set_trace_processors([processor])
    yield processor, session, client
    set_trace_processors([])
    processor.shutdown()


def refund_agent(refunded: list) -> tuple[Agent, TracedScriptedModel]:
    @function_tool(needs_approval=True)
    def refund(order: str, amount: float) -> str:
        """Refund an order."""
        refunded.append((order, amount))
        return f"refunded {amount} on {order}"

    model = TracedScriptedModel(
        [
            ModelStep(
                output=[function_call("refund", {"order": "A-7", "amount": 12.5}, call_id="r1")],
                usage=usage(50, 10),
            ),
            ModelStep(output=[assistant_message("Done.")], usage=usage(80, 5)),
        ]
    )
    return Agent(name="cashier", instructions="Refund.", tools=[refund], model=model), model


def answer_when_asked(client: Client, answer: str, asked: list) -> threading.Thread:
    def run():
        for _ in range(200):
            waiting = client.request("GET", "questions", params={"status": "open"})["results"]
            if waiting:
                asked.append(waiting[0])
                client.request("POST", f"questions/{waiting[0]['id']}/answer", {"answer": answer})
                return
            threading.Event().wait(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("answer", ["approve", "reject"])
async def test_a_tool_call_waits_for_a_persons_answer_and_the_run_goes_on(processor, answer):
    processor, session, client = processor
    refunded, asked = [], []
    agent, model = refund_agent(refunded)
    person = answer_when_asked(client, answer, asked)
    result = await run_with_approvals(processor, agent, "Refund order A-7", timeout=60)
    person.join(10)
    assert result.final_output == "Done."
    model.assert_complete()
    assert refunded == ([("A-7", 12.5)] if answer == "approve" else [])
    (question,) = asked
    assert (
        question["prompt"]
        == 'cashier wants to call refund({"order":"A-7","amount":12.5}). Allow it?'
    )
    assert question["choices"] == ["approve", "reject"] and question["default"] == "reject"
    assert await asyncio.to_thread(processor.force_flush)
    # One trace across the stop: one task, the question on it, and the
    # tool's steps only when it was allowed.
    (task,) = client.request("GET", "tasks", params={"session": session["id"]})["results"]
    assert question["task_id"] == str(task["id"])
    assert task["status"] == "completed" and task["result"] == "Done."
    answered = client.request("GET", f"questions/{question['id']}")
    assert (answered["status"], answered["answer"], answered["answered_by"]) == (
        "answered",
        answer,
        "admin",
    )
    output = client.request("GET", f"tasks/{task['id']}/output")["steps"]
    seen = [(s["status"], s["data"].get("result")) for s in output if s["data"].get("tool")]
    waited = [("tool_calling", None), ("tool_completed", None), ("approval", None)]
    if answer == "approve":
        ran = [("tool_calling", None), ("tool_completed", "refunded 12.5 on A-7")]
        assert seen == [*waited, ("approved", None), *ran]
    else:
        assert seen == [*waited, ("rejected", None)]
    assert [s["status"] for s in output][-2:] == ["thinking", "completed"]


async def test_without_an_answer_in_time_the_call_is_rejected(processor):
    processor, session, client = processor
    refunded = []
    agent, _ = refund_agent(refunded)
    result = await run_with_approvals(processor, agent, "Refund order A-7", timeout=1)
    assert result.final_output == "Done." and refunded == []
    (question,) = client.request("GET", "questions", params={"session": session["id"]})["results"]
    assert (question["status"], question["answer"]) == ("expired", "reject")
    with pytest.raises(ValueError, match="default"):
        await run_with_approvals(processor, agent, "again", default="maybe")

"""Tool calls an agent may make only with a person's approval, asked in
Switchboard.

    from agents import function_tool
    from switchboard_client.agents import run_with_approvals

    @function_tool(needs_approval=True)
    def refund(order: str, amount: float) -> str: ...

    result = await run_with_approvals(processor, agent, "Refund order 7")

The OpenAI Agents SDK stops a run before a tool call that needs approval and
hands back the calls it waits on (`result.interruptions`). Here each one is
asked on the run's task (`Client.ask`, choices `approve` / `reject`): the
question shows on the task in the workspace and the run view (with an
`approval` step, then `approved` or `rejected`), and the run goes on with the
answers, in the same trace, so the same task. (The SDK traces the call that
waits as a function span with no result, so a `tool_calling` /
`tool_completed` pair comes before the `approval` step.) Unanswered
after `timeout` seconds (None: wait), a call is rejected (`default`).
"""

from __future__ import annotations

import asyncio
import json
import logging

from agents import Runner, get_current_trace, trace

logger = logging.getLogger(__name__)

APPROVE, REJECT = "approve", "reject"
ARGUMENTS_SHOWN = 500  # characters of a call's arguments in the question


def question_of(item) -> str:
    """What a person is asked about one waiting tool call."""
    raw = item.raw_item
    arguments = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, default=str)
    if len(arguments) > ARGUMENTS_SHOWN:
        arguments = arguments[: ARGUMENTS_SHOWN - 1] + "…"
    agent = getattr(item.agent, "name", "the agent")
    return f"{agent} wants to call {item.name}({arguments}). Allow it?"


async def run_with_approvals(
    processor,
    agent,
    input,
    *,
    timeout: float | None = None,
    default: str = REJECT,
    workflow_name: str | None = None,
    **run_options,
):
    """`Runner.run(agent, input, **run_options)`, asking `processor`'s server
    (a SwitchboardTracingProcessor) about every tool call that needs
    approval; the run's final result. A call whose run is not shown (the
    server was away when it began) is answered `default`."""
    if default not in (APPROVE, REJECT):
        raise ValueError(f"default must be {APPROVE!r} or {REJECT!r}")
    current = get_current_trace()
    if current is not None:  # the caller's trace: its task
        return await _run(processor, current, agent, input, timeout, default, run_options)
    with trace(workflow_name or f"{agent.name} run") as made:
        return await _run(processor, made, agent, input, timeout, default, run_options)


async def _run(processor, current, agent, input, timeout, default, run_options):
    result = await Runner.run(agent, input, **run_options)
    while result.interruptions:
        task_id = await asyncio.to_thread(processor.task_of, current.trace_id)
        state = result.to_state()
        for item in result.interruptions:
            answer = default
            if task_id is not None:
                processor.note(
                    current.trace_id, "approval", f"asks to allow {item.name}", tool=item.name
                )
                ask = processor.client.ask
                answer = await asyncio.to_thread(
                    ask, task_id, question_of(item), [APPROVE, REJECT], default, timeout
                )
            else:
                logger.warning("switchboard_client.agents: %s answered %s", item.name, default)
            done = "approved" if answer == APPROVE else "rejected"
            processor.note(current.trace_id, done, f"{item.name} {done}", tool=item.name)
            if answer == APPROVE:
                state.approve(item)
            else:
                state.reject(item, rejection_message=f"A person did not allow {item.name}.")
        result = await Runner.run(agent, state, **run_options)
    return result

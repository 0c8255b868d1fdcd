"""A demo agent run through the real OpenAI Agents SDK, with a scripted model
(no network, no key): a support bot looks an order up, checks the refund
policy (the first try fails), asks a person before it starts the return
(a question on the run's task; unanswered, it goes ahead), hands off to a
writer, and answers. What the
run shows in Switchboard comes from `switchboard_client.agents`, as it would
for a real agent."""

import asyncio
import threading

from agents import Agent, function_tool, set_trace_processors, trace
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.tracing import response_span
from agents.usage import Usage
from openai.types.responses import Response, ResponseUsage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from switchboard_client import Client
from switchboard_client.agents import SwitchboardTracingProcessor, run_with_approvals

ANSWER = (
    "Order 1042 shipped on Monday and arrives Thursday. It is within the 30-day window, "
    "so a refund is possible once it is back; I have started the return for you."
)

_installed: dict[str, SwitchboardTracingProcessor] = {}
_lock = threading.Lock()


class TracedScriptedModel(ScriptedModel):
    """A scripted model traced as the SDK's OpenAI Responses model is: each
    call in a `response` span that carries the response (model, usage, output)."""

    model_name = "scripted-model-1"

    async def get_response(self, *args, **kwargs):
        with response_span() as span:
            answer = await super().get_response(*args, **kwargs)
            usage = answer.usage
            span.span_data.response = Response(
                id="scripted",
                created_at=0,
                model=self.model_name,
                object="response",
                output=answer.output,
                tool_choice="auto",
                tools=[],
                parallel_tool_calls=False,
                status="completed",
                usage=ResponseUsage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    total_tokens=usage.total_tokens,
                    input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
                    output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
                ),
            )
            return answer


def usage(given: int, taken: int) -> Usage:
    return Usage(requests=1, input_tokens=given, output_tokens=taken, total_tokens=given + taken)


def install(base_url: str, token: str) -> SwitchboardTracingProcessor:
    """The process's one trace processor, reporting to this server."""
    with _lock:
        if base_url not in _installed:
            _installed[base_url] = SwitchboardTracingProcessor(Client(base_url, token, timeout=10))
        # Again each time: in tests, other processors may have been set since.
        set_trace_processors([_installed[base_url]])
        return _installed[base_url]


def support_bot(pause) -> Agent:
    """The agents of one run; `pause(seconds)` paces the model and the tools."""

    async def think(step: ModelStep, seconds: float) -> ModelStep:
        await pause(seconds)
        return step

    def after(seconds: float, step: ModelStep) -> ModelStep:
        return ModelStep.respond(lambda call: think(step, seconds))

    attempts = {"policy": 0}
    steps: list = []

    @function_tool
    async def lookup_order(order: str) -> str:
        """Find an order."""
        await pause(1.2)
        return f"order {order}: shipped Monday, arrives Thursday, 59.00 EUR"

    @function_tool
    async def refund_policy(country: str) -> str:
        """Read the refund policy."""
        await pause(1.0)
        attempts["policy"] += 1
        if attempts["policy"] == 1:
            raise TimeoutError("the policy service did not answer within 5 s")
        return "30 days from delivery, goods returned unused"

    @function_tool(needs_approval=True)
    async def start_return(order: str) -> str:
        """Start the return of an order (a person approves it first)."""
        await pause(0.8)
        return f"return of order {order} started: label sent by e-mail"

    def call(seconds: float, name: str, args: dict, given: int, taken: int) -> ModelStep:
        # Each call an id of its own: the SDK runs a call id once.
        called = function_call(name, args, call_id=f"call-{len(steps)}")
        steps.append(called)
        return after(seconds, ModelStep(output=[called], usage=usage(given, taken)))

    model = TracedScriptedModel(
        [
            call(1.5, "lookup_order", {"order": "1042"}, 412, 18),
            call(1.0, "refund_policy", {"country": "DE"}, 520, 16),
            call(0.8, "refund_policy", {"country": "DE"}, 561, 16),
            call(1.0, "start_return", {"order": "1042"}, 590, 14),
            call(1.0, "transfer_to_writer", {}, 610, 9),
            after(2.0, ModelStep(output=[assistant_message(ANSWER)], usage=usage(702, 41))),
        ]
    )
    writer = Agent(name="writer", instructions="Answer the customer kindly.", model=model)
    return Agent(
        name="support",
        instructions="Find the facts, then hand off to the writer.",
        tools=[lookup_order, refund_policy, start_return],
        handoffs=[writer],
        model=model,
    )


def run(base_url: str, token: str, session_id, pause, approval_timeout: float = 45.0) -> str:
    """One run in the session; its status when done. The return waits for
    a person up to `approval_timeout` seconds, then goes ahead."""
    processor = install(base_url, token)
    metadata = {"switchboard_session_id": str(session_id)}

    async def go() -> None:
        with trace("answer a customer", metadata=metadata):
            await run_with_approvals(
                processor,
                support_bot(pause),
                "Where is order 1042, and can I get a refund?",
                timeout=approval_timeout,
                default="approve",
            )

    try:
        asyncio.run(go())
    except Exception:
        processor.force_flush()
        return "failed"
    processor.force_flush()
    return "completed"

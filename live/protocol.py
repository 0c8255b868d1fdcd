"""The socket protocol: frames from clients as typed models, frames to them as functions.

A client frame is JSON text; `parse()` turns it into its `id` and one model
of the discriminated union of actions (`action` is the tag), or raises
`Refused` naming the field at fault. The core's actions are ping, subscribe
and unsubscribe; a feature adds its own with `register()` from its app
config (sessions_app adds cancel_task). Each frame the server sends that is
not an event has one function here that builds it, as `events.event_frame`
builds events.
"""

import json
import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from live.errors import Refused
from live.validation import text_problem, whole_number

# A frame's `id` and a ping's `ts` are echoed: at most this long, if strings.
ECHO_CHARS = 256


def _whole(minimum: int):
    def check(value: Any) -> int | None:
        try:
            return whole_number(value, "", minimum)
        except Refused as error:
            raise ValueError(error.message) from None

    return BeforeValidator(check)


def _echoed(value: Any) -> Any:
    if isinstance(value, str) and len(value) > ECHO_CHARS or isinstance(value, (dict, list)):
        raise ValueError(f"must be a number or a string of at most {ECHO_CHARS}")
    return value


Seq = Annotated[int | None, _whole(0)]
Id = Annotated[int | None, _whole(1)]
Channel = Annotated[str, Field(min_length=1, strict=True)]


class Frame(BaseModel):
    """What every client frame has. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    action: str


class Ping(Frame):
    action: Literal["ping"]
    ts: Annotated[Any, BeforeValidator(_echoed)] = None


class Subscribe(Frame):
    action: Literal["subscribe"]
    channel: Channel
    since: Seq = None
    filter: Any = None  # the channel's stream parses it


class Unsubscribe(Frame):
    action: Literal["unsubscribe"]
    channel: Channel


Handler = Callable[[Any, Any, Any], Awaitable[None]]
_actions: dict[str, tuple[type[Frame], Handler]] = {}
_union: TypeAdapter | None = None


def register(model: type[Frame], handler: Handler) -> None:
    """Add an action: frames whose `action` is the model's tag are parsed into
    it and handed to `handler(consumer, frame, frame_id)`."""
    global _union
    (tag,) = model.model_fields["action"].annotation.__args__
    _actions[tag] = (model, handler)
    models = tuple(model for model, _ in _actions.values())
    member = models[0] if len(models) == 1 else Union[models]  # noqa: UP007 - built at run time
    _union = TypeAdapter(Annotated[member, Field(discriminator="action")])


def actions() -> list[str]:
    return list(_actions)


def handler_of(frame: Frame) -> Handler:
    return _actions[frame.action][1]


def _socket_method(name: str) -> Handler:
    async def handle(consumer, frame: Frame, frame_id) -> None:
        await getattr(consumer, name)(frame, frame_id)

    return handle


# The core's actions, answered by the consumer itself (live.consumers).
register(Ping, _socket_method("do_ping"))
register(Subscribe, _socket_method("do_subscribe"))
register(Unsubscribe, _socket_method("do_unsubscribe"))


# --- parsing ---------------------------------------------------------------------


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def has_surrogate(value) -> bool:
    if isinstance(value, str):
        return text_problem(value.replace("\x00", "")) is not None
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_surrogate(item) for item in value)
    return False


def parse_json(text: str | None) -> dict:
    """A client frame as a JSON object, or `invalid_json`."""
    if text is None:
        raise Refused("frames must be JSON text, not binary", code="invalid_json")
    try:
        frame = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as error:
        raise Refused(f"not valid JSON: {str(error)[:200]}", code="invalid_json") from None
    if not isinstance(frame, dict):
        raise Refused("a frame must be a JSON object", code="invalid_json")
    # The text arrived as UTF-8, so only a \u escape can make a lone surrogate.
    if ("\\ud" in text or "\\uD" in text) and has_surrogate(frame):
        raise Refused("not valid Unicode: a lone surrogate (\\ud800-\\udfff)", code="invalid_json")
    return frame


def frame_id(raw: dict):
    """The frame's `id`, echoed in the reply; Refused (with no id to echo) if it cannot be."""
    value = raw.get("id")
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (str, int, float))
        or isinstance(value, str)
        and len(value) > ECHO_CHARS
    ):
        raise Refused(f"id must be a number or a string of at most {ECHO_CHARS}", field="id")
    return value


def parse_action(raw: dict) -> Frame:
    """The frame as its action's model, or Refused naming the first field at fault."""
    action = raw.get("action")
    if not isinstance(action, str) or not action:
        raise Refused("every frame needs an action", field="action")
    if action not in _actions:
        known = ", ".join(_actions)
        raise Refused(f"unknown action {action[:50]!r}; known: {known}", field="action")
    try:
        return _union.validate_python(raw)
    except ValidationError as error:
        raise refusal(action, error) from None


def refusal(action: str, error: ValidationError) -> Refused:
    first = error.errors(include_url=False)[0]
    # The location starts with the union's tag: ("subscribe", "since").
    place = [str(part) for part in first["loc"][1:]] or ["action"]
    field = place[0]
    if first["type"] == "missing" or first["type"] == "string_too_short":
        message = f"{action} needs a {field}"
    elif first["type"] == "value_error":
        message = f"{field} {first['ctx']['error']}"
    else:
        message = f"{field}: {first['msg']}"
    return Refused(message, field=field)


# --- frames to the client ----------------------------------------------------------


def reply(frame_id, body: dict) -> dict:
    """A reply echoes the frame's id, right after its type."""
    if frame_id is None:
        return body
    return {"type": body.pop("type"), "id": frame_id, **body}


def pong(ts) -> dict:
    return {"type": "pong", "ts": ts}


def subscribed(channel: str, seq: int, snapshot, reset: bool, described) -> dict:
    body = {"type": "subscribed", "channel": channel, "seq": seq}
    if snapshot is not None:
        body["snapshot"] = snapshot
    if reset:
        body["reset"] = True
    if described is not None:
        body["filter"] = described
    return body


def unsubscribed(channel: str, was_subscribed: bool) -> dict:
    return {"type": "unsubscribed", "channel": channel, "was_subscribed": was_subscribed}


def ack(action: str, **fields) -> dict:
    return {"type": "ack", "action": action, **fields}


def error(refused: Refused, **extra) -> dict:
    body = {"type": "error", "code": refused.frame_code, "message": refused.message}
    if refused.field:
        body["field"] = refused.field
    body.update(refused.extra)
    for key, value in extra.items():
        body.setdefault(key, value)
    return body


def overloaded(limit: int, retry_after) -> dict:
    return {
        "type": "error",
        "code": "overloaded",
        "message": f"this server has {limit} sockets; come back later",
        "retry_after": retry_after,
    }

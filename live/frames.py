"""Frames the server can always send.

daphne (autobahn) refuses to send a WebSocket message over its 1 MiB limit,
and nothing can send text that is not valid Unicode; either failure used to
leave a socket open and silent. So:

- every value that reaches a frame is bounded where it comes in
  (live.validation.LIMITS), and lists that a snapshot gathers are
  cut to a byte budget (`fit`);
- `sendable(text)` is the last check before a send: a frame that would still
  not fit is replaced by a notice that says what to load over HTTP
  (`omitted`), never dropped in silence.
"""

import json
from collections.abc import Iterable
from typing import Any

from live.validation import json_size, utf8_size

# What daphne sends at most in one message (autobahn's maxMessagePayloadSize).
FRAME_LIMIT = 1024 * 1024
# What a snapshot's list (sessions, tasks, steps) may take of a frame.
LIST_BUDGET = 512 * 1024


def fit(items: Iterable[Any], budget: int = LIST_BUDGET) -> tuple[list[Any], bool]:
    """The items, in order, while their JSON stays within `budget` bytes (one
    too large alone is passed over); and whether some were left out."""
    kept, used, left_out = [], 0, False
    for item in items:
        size = json_size(item) + 1
        if size > budget:
            left_out = True
            continue
        if used + size > budget:
            return kept, True
        kept.append(item)
        used += size
    return kept, left_out


def too_large(text: str) -> bool:
    return len(text) * 4 > FRAME_LIMIT and utf8_size(text) > FRAME_LIMIT


def sendable(text: str) -> str:
    """`text`, or a notice in its place when it is over the frame limit."""
    return omitted(text) if too_large(text) else text


def omitted(text: str) -> str:
    """A notice in place of a frame too large to send: the same type, channel
    and seq, and where to read the whole of it over HTTP."""
    frame = json.loads(text)
    size = utf8_size(text)
    channel = frame.get("channel")
    notice: dict[str, Any] = {"type": frame.get("type"), "channel": channel}
    for key in ("id", "event", "seq", "ts", "filter", "reset"):
        if key in frame:
            notice[key] = frame[key]
    if frame.get("type") == "event":
        notice["data"] = None
        load = f"/api/v1/events?channel={channel}&since={max(0, frame['seq'] - 1)}&limit=1"
    else:
        notice["snapshot"] = None
        load = f"/api/v1/snapshot?channel={channel}"
    notice["omitted"] = {"reason": "too_large", "bytes": size, "load": load}
    return json.dumps(notice, separators=(",", ":"))

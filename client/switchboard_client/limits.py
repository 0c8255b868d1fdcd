"""What the server can take: bodies under its size limit, text it can store.

The server answers 413 to a body past its SWITCHBOARD_MAX_BODY_BYTES (16 MiB
by default) as soon as the headers announce it, and closes the connection
without reading the rest. A client still sending such a body then mostly sees
the connection reset or a broken pipe, not the 413. So the senders here
(`Reporter`, `LogHandler`) keep every request under a limit of their own
(`max_body`, 4 MiB by default), and take a 413 *or* a body of more than
`BodyLimit.FLOOR` bytes that did not get through (no answer, a broken pipe, a
reset) as "too large": the limit is halved
and what was held is sent again at once, in smaller requests. The limit grows
back as requests succeed (see `BodyLimit`). When the server was really down,
this costs nothing but a few smaller requests once it is back.

PostgreSQL cannot store NUL in text, and no database stores a lone surrogate
(what `errors="surrogateescape"` decoding leaves): the server refuses a body
carrying either. `storable()` replaces both with U+FFFD, the character
Python's own `errors="replace"` decoding puts in place of bytes it cannot
read, so such a line is stored, marked, rather than lost.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

# The most a text field (a log message, an output chunk) may take, measured as
# it is sent (JSON with all but ASCII escaped, never less than its UTF-8): the
# server keeps a log line of 256 KiB and a chunk of 512 KiB in UTF-8.
MAX_TEXT = 256 * 1024
REPLACEMENT = "\ufffd"
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` (text, or JSON of dicts and lists) with NUL and lone surrogates
    replaced by U+FFFD, keys included."""
    if isinstance(value, str):
        return UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(item) for item in value]
    return value


def encoded_size(value: Any) -> int:
    """Bytes of `value` in a request body (`json.dumps` escapes all but ASCII)."""
    return len(json.dumps(value))


def fitting(text: str, room: int) -> int:
    """How many characters of `text` fit in `room` bytes of JSON (at most MAX_TEXT)."""
    room = min(room, MAX_TEXT)
    count = min(len(text), room)
    while count > 0:
        size = encoded_size(text[:count]) - 2  # without the quotes
        if size <= room:
            return count
        count = min(count - 1, count * room // size)
    return 0


def text_too_long(text: str) -> bool:
    # An escaped character takes at most 12 bytes (a surrogate pair), so a
    # short text needs no measuring.
    return len(text) * 12 > MAX_TEXT and encoded_size(text) - 2 > MAX_TEXT


def split_text(item: dict, key: str, room: int) -> tuple[dict, dict] | None:
    """`item` cut in two at its text `key`, the first part at most `room`
    bytes encoded; None when not even one character fits."""
    text = item[key]
    count = fitting(text, room - (encoded_size(item) - encoded_size(text)) - 2)
    if count == 0 or count >= len(text):
        return None
    return {**item, key: text[:count]}, {**item, key: text[count:]}


def take(
    items: list,
    room: int,
    most: int,
    key: str | None,
    alone: bool,
    max_body: int,
    joined: bool = False,
):
    """How many items from the front of `items` go in `room` bytes (at most
    `most`), and the items dropped as too large. An item whose text `key` does
    not fit is cut in two in place (the first part no longer `final`, the
    second a new `uid`): when it is first in a request that holds nothing else
    (`alone`), or anywhere if its parts are `joined` again when read (output
    chunks; a log line is cut only when it cannot go whole). An item too large
    for `room` with no text to cut goes alone, unless it is past `max_body`."""
    count = 0
    dropped = []
    while count < min(len(items), most):
        item = items[count]
        size = encoded_size(item) + 2
        text = item.get(key) if key else None
        if size <= room and not (isinstance(text, str) and text_too_long(text)):
            count += 1
            room -= size
            continue
        first = alone and count == 0
        cut = isinstance(text, str) and (joined or first)
        halves = split_text(item, key, room - 2) if cut else None
        if halves:
            head, rest = halves
            if "final" in head:
                head["final"] = False
            if "uid" in rest:
                rest["uid"] = uuid.uuid4().hex
            items[count : count + 1] = [head, rest]
            count += 1
        elif first:
            if size > max_body:
                dropped.append(items.pop(0))
                continue
            count = 1  # past the limit of now, not past max_body: it goes alone
        break
    return count, dropped


def refused_items(body: Any, part: str) -> dict[int, str]:
    """The items of `part` ("logs", "entries"...) a 400's `errors` names, by
    index, each with the server's words: `{"logs.3.message": ["..."]}` gives
    `{3: "logs.3.message: ..."}`."""
    errors = body.get("errors") if isinstance(body, dict) else None
    named: dict[int, str] = {}
    if not isinstance(errors, dict):
        return named
    for field, messages in errors.items():
        head, _, rest = str(field).partition(".")
        index = rest.split(".", 1)[0]
        if head == part and index.isdigit():
            words = "; ".join(messages) if isinstance(messages, list) else str(messages)
            named.setdefault(int(index), f"{field}: {words}")
    return named


class BodyLimit:
    """The largest request body to send now: `max_body` at most, less after a
    body was too large for the server. It grows back as requests succeed, up
    to half the smallest body answered 413 (that one is known too large), or
    up to `max_body` after bodies were only cut off (that may be an outage)."""

    # A body this small is read whole by the server before it answers, so a
    # 413 for it arrives as a 413; a connection cut off under it is an outage.
    FLOOR = 16 * 1024
    MINIMUM = 1024  # the server's own smallest limit

    def __init__(self, max_body: int) -> None:
        if max_body < self.MINIMUM:
            raise ValueError(f"max_body must be at least {self.MINIMUM} bytes")
        self.max_body = max_body
        self.now = max_body
        self.refused: int | None = None  # the smallest body answered 413

    def too_large(self, size: int) -> bool:
        """A body of `size` bytes got a 413: False when nothing smaller can go."""
        if size <= self.MINIMUM:
            return False
        self.refused = min(size, self.refused or size)
        self.now = max(self.MINIMUM, min(self.now, size) // 2)
        return True

    def cut_off(self, size: int) -> bool:
        """A body of `size` bytes was cut off (maybe an early 413): True when
        the limit came down, so a retry at once is worth it."""
        if size <= self.FLOOR or self.now <= self.FLOOR:
            return False
        self.now = max(self.FLOOR, min(self.now, size) // 2)
        return True

    def fits(self) -> None:
        most = self.max_body if self.refused is None else max(self.MINIMUM, self.refused // 2)
        self.now = max(self.now, min(most, self.now * 2))

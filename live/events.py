"""The event log: every change is recorded here, then published on commit.

The write path is: a service function changes a model and calls `record()`
inside the same transaction. `record()` takes its session's event lock, stores the
event and its place in each channel, and registers one publish on commit.
The publisher sends it, serialized once, as one layer message to the events
group, whatever the channels it is on; each process's hub hands it to the
local subscriptions of its channels (live.hub).
"""

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from live import eventstore, ordering, stats
from live.eventstore import Item, Recorded, newest_seq
from live.models import Event, EventChannel, Retention
from live.ordering import is_wide, readable_until
from live.publisher import publisher

log = logging.getLogger("switchboard.events")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# Made once: json.dumps with options builds an encoder on every call, which
# cost a batch of events a fifth of their encoding.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default).encode
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), default=_default).encode


def dumps(value: Any) -> str:
    """Compact JSON text that can always be sent: a lone surrogate that got
    past the edges (live.validation) is escaped rather than left to
    fail the UTF-8 encoding of a send."""
    text = _ENCODE(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _ENCODE_ASCII(value)
    return text


# Every event is published once, to this layer group, whatever its channels;
# each process's hub is in it while it has subscribers (live.hub).
EVENTS_GROUP = "switchboard.events"
# How every event frame begins; the channel's name follows (see event_frame).
FRAME_HEAD = '{"type":"event","channel":'


def on_channel(message: dict, channel: str, prev: int) -> dict:
    """One channel's share of a published event: its frame text, its seq and
    the seq before it on that channel, and what rides along (owner_id, count)."""
    relayed = {k: v for k, v in message.items() if k not in ("places", "rest")}
    relayed.update(channel=channel, prev=prev, frame=FRAME_HEAD + dumps(channel) + message["rest"])
    return relayed


def channel_head(channel: str) -> int:
    """The newest seq committed on a channel (0 if none), at or below the
    horizon on a wide channel: where a reader may start."""
    placed = EventChannel.objects.filter(channel=channel)
    until = readable_until(channel)
    if until is not None:
        placed = placed.filter(event_id__lte=until)
    head = placed.order_by("-event_id").values_list("event_id", flat=True).first()
    return head or 0


def heads_after(cursors: dict[str, int]) -> dict[str, int]:
    """The newest seq of each channel that has events after the given cursor.

    One query per hundred channels, reading only index entries newer than
    each cursor (a GROUP BY over whole channels would read every event of a
    busy channel on PostgreSQL)."""
    heads: dict[str, int] = {}
    items = list(cursors.items())
    top = ordering.horizon() if any(is_wide(channel) for channel in cursors) else None
    for start in range(0, len(items), 100):
        condition = Q()
        for channel, cursor in items[start : start + 100]:
            if top is not None and is_wide(channel):
                condition |= Q(channel=channel, event_id__gt=cursor, event_id__lte=top)
            else:
                condition |= Q(channel=channel, event_id__gt=cursor)
        rows = (
            EventChannel.objects.filter(condition)
            .values_list("channel")
            .annotate(head=Max("event_id"))
            .order_by()
        )
        heads.update(rows)
    return heads


def pruned_through() -> int:
    return Retention.objects.values_list("pruned_through", flat=True).first() or 0


def must_reset(since: int) -> bool:
    """Whether a reader at `since` must start again from a snapshot: `since`
    is older than what is kept, or newer than anything stored (a client of a
    database that was reset). The one rule for the socket and the events API."""
    return since < pruned_through() or since > newest_seq()


def record(
    kind: str,
    channels: Iterable[str],
    *,
    session_id: int | None,
    task_id: int | None = None,
    data: dict,
    payload: Callable[[Recorded], dict] | None = None,
    extras: dict | None = None,
    ts: datetime | None = None,
    into: "Pending | None" = None,
) -> Recorded:
    """Store one event on `channels` and publish it when the transaction commits.

    `data` is stored; `payload(event)`, when given, builds what the frame
    carries instead (log.append stores a count and sends the lines).
    `extras` ride along in the layer message for consumers (never sent).
    An event on a channel of one session names its session: the session's
    event lock keeps that channel's ids in commit order (live.ordering).
    With `into`, the event waits there, to be stored with others (its id is
    set when they are)."""
    pending = into if into is not None else Pending()
    event = pending.add(kind, channels, session_id, task_id, data, payload, extras, ts)
    if into is None:
        pending.store()
    return event


class Pending:
    """Events recorded together: stored, in the order they were added, in one
    statement (PostgreSQL; two on SQLite) however many they are, and
    published in one send when the transaction commits. A batch of reports
    and a replay write through one of these (sessions_app.reports)."""

    def __init__(self) -> None:
        self._items: list[Item] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, kind, channels, session_id, task_id, data, payload, extras, ts) -> Recorded:
        channels = list(dict.fromkeys(channels))
        if not channels:
            raise RuntimeError(f"an event ({kind}) must be on a channel")
        if session_id is None and not all(is_wide(channel) for channel in channels):
            raise RuntimeError(f"an event on {channels} must name its session")
        owner_id = extras.get("owner_id") if extras else None
        event = Recorded(kind, session_id, task_id, owner_id, ts or timezone.now(), data)
        self._items.append(Item(event, channels, payload, extras))
        return event

    def store(self) -> list[Recorded]:
        """Store what waits here (taking each session's event lock first) and
        publish it on commit."""
        items, self._items = self._items, []
        if not items:
            return []
        for session_id in dict.fromkeys(item.event.session_id for item in items):
            ordering.lock(session_id)
        for item in items:  # encoded once: stored as it is, and sent
            item.text = dumps(item.event.data)
            item.ts = item.event.ts.isoformat()
        store = eventstore.store if connection.vendor == "postgresql" else eventstore.store_plain
        prevs = store(items)
        messages = []
        for item, prev in zip(items, prevs, strict=True):
            event, channels = item.event, item.channels
            body = dumps(item.payload(event)) if item.payload else item.text
            message = {
                "type": "sb.event",
                "seq": event.id,
                "places": {channel: prev[channel] for channel in channels},
                "rest": frame_rest(event.kind, event.id, item.ts, body),
                **(item.extras or {}),
            }
            messages.append((EVENTS_GROUP, message))
        kinds = [item.event.kind for item in items]
        packed = pack(messages)
        transaction.on_commit(lambda: committed(kinds, packed))
        return [item.event for item in items]


# What one layer message carries at most: the events of a batch go out in a
# few messages, not one each (a message is a round trip to Redis, a place in
# the layer's queue of every process, and a wake of its hub).
PACK_EVENTS = 500
PACK_CHARS = 512 * 1024


def pack(messages: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Consecutive event messages as `sb.events` messages of several each (in
    order; one alone stays an `sb.event`): the hub unpacks them (live.hub)."""
    if len(messages) < 2:
        return messages
    packs: list[list[dict]] = [[]]
    size = 0
    for _, message in messages:
        grows = len(message["rest"]) + 100 * len(message["places"])
        if packs[-1] and (len(packs[-1]) >= PACK_EVENTS or size + grows > PACK_CHARS):
            packs.append([])
            size = 0
        packs[-1].append(message)
        size += grows
    return [
        (EVENTS_GROUP, one[0] if len(one) == 1 else {"type": "sb.events", "events": one})
        for one in packs
    ]


def committed(kinds: list[str], messages: list[tuple[str, dict]]) -> None:
    stats.live.recorded(kinds)
    publisher.publish(messages)


@dataclass
class StoredFrame:
    seq: int
    frame: dict


def read_channel(
    channel: str,
    since: int,
    limit: int = 500,
    owner_id: int | None = None,
    until: int | None = None,
) -> list[StoredFrame]:
    """Committed events of a channel after `since` (up to `until`), oldest
    first, as frames; with `owner_id`, only events of that user's sessions."""
    placements = EventChannel.objects.filter(channel=channel, event_id__gt=since)
    until = readable_until(channel, until)
    if owner_id is not None:
        placements = placements.filter(event__owner_id=owner_id)
    if until is not None:
        placements = placements.filter(event_id__lte=until)
    # As plain rows, not model instances: a catch-up reads thousands, and
    # making two instances a row (the placement, its event) was most of it.
    rows = placements.order_by("event_id").values_list(*(f"event__{f}" for f in STORED))[:limit]
    return frames_for([StoredEvent(*row) for row in rows], channel)


# What a stored frame is made from: an Event's fields, or a row of them.
STORED = ("id", "kind", "ts", "data", "session_id", "task_id")


@dataclass(slots=True)
class StoredEvent:
    id: int
    kind: str
    ts: datetime
    data: Any
    session_id: int | None
    task_id: int | None


# Events whose frame data is not stored in the event row, and how to load it
# (logs_app registers log.append, whose lines live in LogEntry).
_loaders: dict[str, Callable[[list[Event]], dict[int, dict]]] = {}
_primary: dict[str, Callable[[Event], str]] = {}


def register_loader(
    kind: str,
    load: Callable[[list[Event]], dict[int, dict]],
    primary: Callable[[Event], str] | None = None,
) -> None:
    """`load(events)` gives the frame data of stored events of `kind` by id;
    `primary(event)` names the channel such an event is listed under."""
    _loaders[kind] = load
    if primary is not None:
        _primary[kind] = primary


def event_frame(channel: str, kind: str, seq: int, ts: str, data: Any) -> dict:
    """The one shape of an event frame, live or stored."""
    return {"type": "event", "channel": channel, "event": kind, "seq": seq, "ts": ts, "data": data}


def frame_rest(kind: str, seq: int, ts: str, data_text: str) -> str:
    """An event frame's text after its channel's name (FRAME_HEAD, the name,
    then this: the same on every channel), as dumps(event_frame(...)) writes
    it, around data already encoded. A kind is a word and a time ISO 8601
    digits: neither needs escaping."""
    return f',"event":"{kind}","seq":{seq},"ts":"{ts}","data":{data_text}}}'


def frames_for(events: list[Event | StoredEvent], channel: str | None = None) -> list[StoredFrame]:
    """Frames for stored events (data loaded by its kind's loader when it has one)."""
    loaded: dict[int, dict] = {}
    for kind, load in _loaders.items():
        of_kind = [e for e in events if e.kind == kind]
        if of_kind:
            loaded.update(load(of_kind))
    return [
        StoredFrame(
            seq=event.id,
            frame=event_frame(
                channel or primary_channel(event),
                event.kind,
                event.id,
                event.ts.isoformat(),
                loaded.get(event.id, event.data),
            ),
        )
        for event in events
    ]


def primary_channel(event: Event) -> str:
    """The narrowest channel an event is on, for listings that show each event once."""
    if event.kind in _primary:
        return _primary[event.kind](event)
    if _primary_default is not None:
        return _primary_default(event)
    return "system"


_primary_default: Callable[[Event], str] | None = None


def register_primary(primary: Callable[[Event], str]) -> None:
    """Name the channel an event of any kind without its own is listed under
    (sessions_app: the event's task or session channel)."""
    global _primary_default
    _primary_default = primary

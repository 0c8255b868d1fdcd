"""The order of event ids, and where a reader may go up to.

Ids follow commit order within every channel that belongs to one session
(session:<id>, task:<id>, logs:<id>): each writer of a session holds the
session's event lock from its first event to its commit (lock()). Writers
of different sessions never wait for each other, so across sessions ids may
commit out of order. The channels that span sessions (sessions, tasks,
system: "wide") and the readers of every channel at once are therefore read
up to horizon(): every event at or below it is committed or never will be.
Nobody waits for it. SQLite has one writer at a time (BEGIN IMMEDIATE):
there, ids follow commit order everywhere and nothing is cut. The SQL
functions are sessions_app's migration 0009; docs/ARCHITECTURE.md, "Order
without a global lock", says why it is gap-free.
"""

import threading

from django.db import connection
from django.db.models import QuerySet

from live.models import Event

_wide_kinds: set[str] = set()


def register_wide(kind: str) -> None:
    """Channels of this kind carry the events of many sessions (live.streams)."""
    _wide_kinds.add(kind)


def is_wide(channel: str) -> bool:
    return channel.partition(":")[0] in _wide_kinds


def reorders() -> bool:
    """Whether ids may commit out of order across sessions (PostgreSQL)."""
    return connection.vendor == "postgresql"


def lock(session_id: int | None) -> None:
    """Take the session's event lock (and mark the transaction in flight)
    until the transaction ends; record() takes it before it stores an event.
    A writer may take it earlier, to decide under it (a log batch's uids)."""
    if not connection.in_atomic_block:
        raise RuntimeError("events.record() must run inside transaction.atomic()")
    if connection.vendor == "postgresql":
        key = None if session_id is None else session_id % 0x7FFFFFFF
        with connection.cursor() as cursor:
            cursor.execute("SELECT switchboard_enter(%s)", [key])


def horizon() -> int | None:
    """The newest seq a reader of a wide channel, or of every channel at once,
    may go up to: every event at or below it is committed or never will be.
    One statement, no lock: call it before the read it bounds, in a statement
    of its own, so that the read's snapshot is taken after it. None where ids
    always follow commit order (SQLite).

    It never goes back within a process: a writer that read the sequence
    but is not yet marked can make a later reading lower than an earlier
    one, and both are true (what was finished stays finished), so the
    highest reading is kept; the hub releases up to a reading, and a
    subscriber's read after it must reach as far (live.order)."""
    if not reorders():
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT top, horizon FROM switchboard_horizon()")
        top, reading = cursor.fetchone()
    top, reading = top or 0, reading or 0
    key = connection.settings_dict["NAME"]
    with _highest_guard:
        highest = _highest.get(key, 0)
        if highest > top:
            highest = 0  # the sequence was reset (a database made again)
        highest = _highest[key] = max(highest, reading)
    return highest


_highest: dict[str, int] = {}
_highest_guard = threading.Lock()


def up_to_horizon(rows: QuerySet[Event]) -> QuerySet[Event]:
    """Events of every channel at once, cut at horizon() (see there)."""
    top = horizon()
    return rows if top is None else rows.filter(id__lte=top)


def readable_until(channel: str, until: int | None = None) -> int | None:
    """Where a read of `channel` must stop: `until`, or lower for a wide
    channel while older events are in flight."""
    if not is_wide(channel):
        return until
    if until is not None and until <= _highest.get(connection.settings_dict["NAME"], 0):
        return until  # within a horizon already read here (a head read with it)
    top = horizon()
    if top is None:
        return until
    return top if until is None else min(until, top)

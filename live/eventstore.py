"""Events and their placements stored as SQL: one statement however many.

live.events builds the events (`Pending`) and publishes them; this stores
them: on PostgreSQL one statement with the rows as JSON, on SQLite (one
writer at a time) an insert, a read of the heads, an insert. See "Many
reports, few statements" in docs/ARCHITECTURE.md.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from live.models import Event, EventChannel


@dataclass(slots=True)
class Recorded:
    """An event as recorded: its row's values, and its id once stored. Not a
    model instance: a batch records thousands, and building a model each
    cost more than storing it."""

    kind: str
    session_id: int | None
    task_id: int | None
    owner_id: int | None
    ts: datetime
    data: dict
    id: int | None = None

    @property
    def pk(self) -> int | None:
        return self.id


@dataclass
class Item:
    """An event waiting to be stored, with its channels and what builds its frame."""

    event: Recorded
    channels: list[str]
    payload: Callable[[Recorded], dict] | None
    extras: dict | None
    # The data as JSON text, and the time as ISO 8601 (set by live.events
    # before it is stored).
    text: str = ""
    ts: str = ""


def channel_heads(channels: list[str]) -> dict[str, int]:
    """The newest committed seq of several channels, in one round trip.

    One index probe each, as scalar subqueries of one SELECT: a GROUP BY with
    MAX would read every event of a busy channel on PostgreSQL, which has no
    loose index scan."""
    if not channels:
        return {}
    quote = connection.ops.quote_name
    probe = (
        f"(SELECT {quote('event_id')} FROM {quote(EventChannel._meta.db_table)}"
        f" WHERE {quote('channel')} = %s ORDER BY {quote('event_id')} DESC LIMIT 1)"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join([probe] * len(channels)), channels)
        row = cursor.fetchone()
    return {channel: head or 0 for channel, head in zip(channels, row, strict=True)}


def _rows(items: list[Item]) -> list[tuple]:
    """The event rows: kind, session_id, task_id, owner_id, ts, data."""
    ts = Event._meta.get_field("ts")
    return [
        (
            item.event.kind,
            item.event.session_id,
            item.event.task_id,
            item.event.owner_id,
            ts.get_db_prep_save(item.event.ts, connection),
            item.text,
        )
        for item in items
    ]


def store_plain(items: list[Item]) -> list[dict[str, int]]:
    """Insert the events, read their channels' heads, insert their placements
    (SQLite, one writer at a time): the first event takes the next id and,
    with it, the write lock; the others follow it, one id each."""
    table, placements = Event._meta.db_table, EventChannel._meta.db_table
    insert = f"INSERT INTO {table} (kind, session_id, task_id, owner_id, ts, data"
    rows = _rows(items)
    with connection.cursor() as cursor:
        cursor.execute(insert + ") VALUES (%s, %s, %s, %s, %s, %s)", rows[0])
        first = cursor.lastrowid
        if len(rows) > 1:
            cursor.executemany(
                insert + ", id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(*row, first + n) for n, row in enumerate(rows[1:], start=1)],
            )
    for n, item in enumerate(items):
        item.event.id = first + n
    wanted = list(dict.fromkeys(c for item in items for c in item.channels))
    heads = {}
    for start in range(0, len(wanted), 500):  # a SELECT has at most 2,000 columns
        heads.update(channel_heads(wanted[start : start + 500]))
    prevs = []
    for item in items:
        prevs.append({channel: heads[channel] for channel in item.channels})
        heads.update(dict.fromkeys(item.channels, item.event.id))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {placements} (event_id, channel, prev) VALUES (%s, %s, %s)",
            [
                (item.event.id, channel, prev[channel])
                for item, prev in zip(items, prevs, strict=True)
                for channel in item.channels
            ],
        )
    return prevs


def store(items: list[Item]) -> list[dict[str, int]]:
    """Insert the events and their placements, reading each channel's head, in
    one statement (PostgreSQL) with two parameters however many events (the
    rows and the places as JSON: a statement with thousands of values costs
    more to send than to run). Ids are taken from the sequence, sorted and
    given in order; each placement's prev is the event before it in this
    statement on its channel, or the channel's head. The statement's
    snapshot is taken after the sessions' locks, so the heads of their
    channels are current; a wide channel's head may miss an event in flight
    (the hub orders wide channels itself: live.order)."""
    table, placements = Event._meta.db_table, EventChannel._meta.db_table
    sql = f"""
        WITH ids AS (
            SELECT row_number() OVER (ORDER BY id)::int AS n, id FROM (
                SELECT nextval(pg_get_serial_sequence('{table}', 'id')) AS id
                FROM generate_series(1, %s)) AS taken
        ), event AS (
            INSERT INTO {table} (id, kind, session_id, task_id, owner_id, ts, data)
            SELECT ids.id, r.kind, r.session_id, r.task_id, r.owner_id, r.ts, r.data
            FROM jsonb_to_recordset(%s::jsonb) AS r(
                n int, kind varchar, session_id bigint, task_id bigint, owner_id bigint,
                ts timestamptz, data jsonb) JOIN ids USING (n)
            RETURNING id
        ), placed AS (
            INSERT INTO {placements} (event_id, channel, prev)
            SELECT p.event_id, p.channel, COALESCE(p.before, (
                SELECT e.event_id FROM {placements} e WHERE e.channel = p.channel
                ORDER BY e.event_id DESC LIMIT 1), 0)
            FROM (
                SELECT ids.id AS event_id, c.channel,
                       lag(ids.id) OVER (PARTITION BY c.channel ORDER BY c.n) AS before
                FROM jsonb_to_recordset(%s::jsonb) AS c(n int, channel varchar) JOIN ids USING (n)
            ) AS p
            RETURNING event_id, channel, prev
        )
        SELECT event_id, channel, prev FROM placed
    """
    # The rows as JSON text around each event's data, encoded once already.
    rows = (
        "["
        + ",".join(
            f'{{"n":{n},"kind":"{e.kind}","session_id":{_number(e.session_id)},'
            f'"task_id":{_number(e.task_id)},"owner_id":{_number(e.owner_id)},'
            f'"ts":"{item.ts}","data":{item.text}}}'
            for n, (e, item) in enumerate(((item.event, item) for item in items), start=1)
        )
        + "]"
    )
    places = [
        {"n": n, "channel": channel}
        for n, item in enumerate(items, start=1)
        for channel in item.channels
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [len(items), rows, json.dumps(places)])
        found = cursor.fetchall()
    ids = sorted({event_id for event_id, _, _ in found})
    for item, seq in zip(items, ids, strict=True):
        item.event.id = seq
    prev = {(event_id, channel): before for event_id, channel, before in found}
    return [{c: prev[(item.event.id, c)] for c in item.channels} for item in items]


def _number(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def newest_seq(owner_id: int | None = None) -> int:
    """The newest stored seq (0 when none), of every session or of one owner's."""
    events = Event.objects.all() if owner_id is None else Event.objects.filter(owner_id=owner_id)
    return events.order_by("-id").values_list("id", flat=True).first() or 0

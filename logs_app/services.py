"""Log ingest and log queries.

Ingest is batched: one transaction per request, one log.append event per
`LOG_FRAME_ENTRIES` lines (so 500 lines are one frame), and a uid already
stored for the session is skipped, which makes retries safe.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.functions import Upper
from django.utils import timezone

from live import events, ordering, stats
from live.errors import Refused
from live.validation import json_size, utf8_size, whole_number
from logs_app import alerting
from logs_app.models import COLUMNS, LEVELS, LogEntry, entry_json
from sessions_app.models import Session
from sessions_app.recording import service_write


def fold(text: str) -> str:
    """Text as the keyword search compares it, the one rule for the live
    filter and the stored query: each character upper-cased on its own, as
    SQL's UPPER does ("ß" stays "ß"; Python alone would make it "SS").
    PostgreSQL's UPPER does this itself; SQLite's knows only ASCII, so it is
    given this function in its place (`use_fold_on_sqlite`)."""
    upper = text.upper()
    if len(upper) == len(text):  # no character grew into several
        return upper
    return "".join(c if len(c.upper()) != 1 else c.upper() for c in text)


def use_fold_on_sqlite(sender, connection, **kwargs) -> None:
    """connection_created: SQLite's UPPER becomes `fold`, for every connection."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("upper", 1, _sql_fold, deterministic=True)


def _sql_fold(value):
    return fold(value) if isinstance(value, str) else value


@dataclass
class LogFilter:
    """The server-side filter of a logs view: minimum level, task, substring."""

    level: int = 0
    task_id: int | None = None
    q: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.level or self.task_id or self.q)

    def matches(self, entry: dict) -> bool:
        if entry["levelno"] < self.level:
            return False
        if self.task_id is not None and entry["task_id"] != str(self.task_id):
            return False
        return not self.q or fold(self.q) in fold(entry["message"])

    def apply(self, queryset: QuerySet[LogEntry]) -> QuerySet[LogEntry]:
        if self.level:
            queryset = queryset.filter(level__gte=self.level)
        if self.task_id is not None:
            queryset = queryset.filter(task_id=self.task_id)
        if self.q and connection.vendor == "postgresql":
            # UPPER(message) LIKE UPPER(%q%): what the trigram index answers.
            queryset = queryset.filter(message__icontains=self.q)
        elif self.q:
            # SQLite's LIKE ignores only ASCII case: compare folded text.
            queryset = queryset.alias(folded=Upper("message")).filter(folded__contains=fold(self.q))
        return queryset

    def as_json(self) -> dict:
        return {
            "level": self.level,
            "task": str(self.task_id) if self.task_id is not None else None,
            "q": self.q,
        }


def channel(session_id: int) -> str:
    """The name of a session's logs channel."""
    return f"logs:{session_id}"


def parse_level(value, field: str = "level") -> int:
    """A level by name (any case) or number; '' or None mean no minimum."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise Refused("must be a level name (DEBUG … CRITICAL) or a number", field=field)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    elif isinstance(value, str) and value.strip().upper() in LEVELS:
        return LEVELS[value.strip().upper()]
    elif isinstance(value, str) and value.strip().upper() == "WARN":
        return LEVELS["WARNING"]
    else:
        raise Refused("must be a level name (DEBUG … CRITICAL) or a number", field=field)
    if not 0 <= number <= 100:
        raise Refused("must be between 0 and 100", field=field)
    return number


def parse_id(value, field: str) -> int | None:
    """An id (a whole number ≥ 1), or None when absent."""
    return whole_number(value, field, minimum=1)


def parse_filter(raw) -> LogFilter:
    """A subscription's `filter` object ({level, task, q}); field 'filter' on error."""
    if raw is None:
        return LogFilter()
    if not isinstance(raw, dict):
        raise Refused("must be an object with level, task and q", field="filter")
    unknown = set(raw) - {"level", "task", "task_id", "q"}
    if unknown:
        raise Refused(f"unknown key(s): {', '.join(sorted(unknown))}", field="filter")
    try:
        level = parse_level(raw.get("level"))
        task_id = parse_id(raw.get("task", raw.get("task_id")), "task")
    except Refused as error:
        raise Refused(f"{error.field} {error.message}", field="filter") from None
    q = raw.get("q") or ""
    if not isinstance(q, str):
        raise Refused("q must be a string", field="filter")
    if "\x00" in q:
        raise Refused("q must not contain NUL (\\u0000) characters", field="filter")
    return LogFilter(level=level, task_id=task_id, q=q)


def append_entries(session_id: int, entries: list[dict]) -> list[LogEntry]:
    """Store validated entries in one transaction; returns the ones stored
    (entries whose uid the session already has are skipped)."""
    per_frame = settings.SWITCHBOARD["LOG_FRAME_ENTRIES"]
    with service_write():
        # The session's event lock, taken before the uid check, so that two
        # retries of the same batch cannot both decide the lines are new.
        ordering.lock(session_id)
        uids = [e["uid"] for e in entries if e.get("uid")]
        seen = set()
        if uids:
            seen = set(
                LogEntry.objects.filter(session_id=session_id, uid__in=uids).values_list(
                    "uid", flat=True
                )
            )
        fresh = []
        for entry in entries:
            uid = entry.get("uid")
            if uid:
                if uid in seen:
                    continue
                seen.add(uid)
            fresh.append(entry)
        stored: list[LogEntry] = []
        owner_id = Session.objects.filter(pk=session_id).values_list("owner_id", flat=True).first()
        for batch in frame_batches(fresh, per_frame):
            stored.extend(_record_batch(session_id, owner_id, batch))
        alerting.check(session_id, stored)  # the log alert rules, in this transaction
        transaction.on_commit(lambda: stats.live.stored_lines(len(stored)))
    return stored


# Bytes of lines one log.append frame carries at most (a line's own bound is
# validation.LIMITS["log_message"]): the frame stays well under 1 MiB.
FRAME_BYTES = 640 * 1024
# What an entry's JSON adds to its message and extra (ids, time, level...).
ENTRY_OVERHEAD = 256


def frame_batches(entries: list[dict], per_frame: int) -> Iterator[list[dict]]:
    """Consecutive runs of entries, each at most `per_frame` lines and
    FRAME_BYTES of JSON: one log.append event each."""
    batch: list[dict] = []
    size = 0
    for entry in entries:
        extra = entry.get("extra")
        grows = ENTRY_OVERHEAD + utf8_size(entry["message"]) + (json_size(extra) if extra else 0)
        if batch and (len(batch) >= per_frame or size + grows > FRAME_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += grows
    if batch:
        yield batch


def _record_batch(session_id: int, owner_id: int | None, batch: list[dict]) -> list[LogEntry]:
    rows: list[LogEntry] = []

    def payload(event) -> dict:
        now = timezone.now()
        values = [
            (
                session_id,
                entry.get("task_id"),
                entry.get("ts") or now,
                entry.get("level", LEVELS["INFO"]),
                entry.get("logger") or "",
                entry["message"],
                entry.get("extra"),
                entry.get("uid") or None,
                event.id,
            )
            for entry in batch
        ]
        ids = _insert_entries(values)
        rows.extend(LogEntry(pk, *row) for pk, row in zip(ids, values, strict=True))
        return {"entries": [entry_json(pk, *row) for pk, row in zip(ids, values, strict=True)]}

    events.record(
        "log.append",
        [channel(session_id)],
        session_id=session_id,
        data={"count": len(batch)},
        payload=payload,
        extras={"count": len(batch), "owner_id": owner_id},
    )
    return rows


# LogEntry's columns after its id, in the order of its fields (and of its
# constructor's positional arguments); those whose values need adapting.
INSERTED = ("session_id", "task_id", "ts", "level", "logger", "message", "extra", "uid", "seq")
ADAPTED = ("ts", "extra")


def _insert_entries(values: list[tuple]) -> list[int]:
    """Insert rows of INSERTED columns; their ids, in order.

    One statement built here, not bulk_create, which compiles each value
    through its field and cost more than the insert itself for 500 lines:
    on PostgreSQL one array a column through unnest, so the statement has
    nine parameters however many rows (psycopg parses a statement with
    thousands of placeholders on every call, a quarter of the server's time
    under a log flood); elsewhere a multi-row INSERT per batch the database
    allows."""
    if not connection.features.can_return_rows_from_bulk_insert:  # SQLite before 3.35
        made = LogEntry.objects.bulk_create([LogEntry(None, *row) for row in values])
        return [entry.pk for entry in made]
    meta = LogEntry._meta
    fields = [meta.get_field(name) for name in INSERTED]
    adapt = [(at, fields[at]) for at, name in enumerate(INSERTED) if name in ADAPTED]
    rows = [list(row) for row in values]
    for row in rows:
        for at, field in adapt:
            row[at] = field.get_db_prep_save(row[at], connection)
    quote = connection.ops.quote_name
    head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    returning = f" RETURNING {quote(meta.pk.column)}"
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
        columns = [list(column) for column in zip(*rows, strict=True)]
        statements = [(f"{head} SELECT * FROM unnest({arrays}){returning}", columns)]
    else:
        one = "(" + ", ".join(["%s"] * len(fields)) + ")"
        size = max(1, connection.ops.bulk_batch_size(fields, rows))
        statements = [
            (
                f"{head} VALUES {', '.join([one] * len(chunk))}{returning}",
                [value for row in chunk for value in row],
            )
            for chunk in (rows[start : start + size] for start in range(0, len(rows), size))
        ]
    ids: list[int] = []
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
            # Ids rise in the order of the rows; RETURNING need not keep it.
            ids.extend(sorted(pk for (pk,) in cursor.fetchall()))
    return ids


@dataclass
class LogPage:
    """Entries as the API shows them (LogEntry.as_json), oldest first."""

    entries: list[dict]
    has_more: bool


def query(
    session_id: int,
    log_filter: LogFilter,
    *,
    limit: int,
    before: int | None = None,
    after: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> LogPage:
    """The newest `limit` matching lines (before an entry id), oldest first.

    With `after`, the oldest lines after that entry id instead (paging forward).
    """
    queryset = log_filter.apply(LogEntry.objects.filter(session_id=session_id))
    if since is not None:
        queryset = queryset.filter(ts__gte=since)
    if until is not None:
        queryset = queryset.filter(ts__lte=until)
    if before is not None:
        queryset = queryset.filter(id__lt=before)
    queryset = queryset.values_list(*COLUMNS)
    if after is not None:
        rows = list(queryset.filter(id__gt=after).order_by("id")[: limit + 1])
        return LogPage(
            entries=[entry_json(*row) for row in rows[:limit]], has_more=len(rows) > limit
        )
    rows = list(queryset.order_by("-id")[: limit + 1])
    return LogPage(
        entries=[entry_json(*row) for row in reversed(rows[:limit])], has_more=len(rows) > limit
    )


def rate(session_id: int, log_filter: LogFilter, minutes: int) -> list[dict]:
    """Lines per minute and level over the last `minutes` minutes, oldest first."""
    from datetime import timedelta

    from django.db.models import Count
    from django.db.models.functions import TruncMinute

    from logs_app.models import level_name

    since = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    rows = (
        log_filter.apply(LogEntry.objects.filter(session_id=session_id, ts__gte=since))
        .annotate(minute=TruncMinute("ts"))
        .values("minute", "level")
        .annotate(n=Count("id"))
        .order_by("minute")
    )
    buckets: dict[datetime, dict[str, int]] = {}
    for row in rows:
        counts = buckets.setdefault(row["minute"], {})
        name = level_name(row["level"])
        counts[name] = counts.get(name, 0) + row["n"]
    return [
        {
            "ts": (since + timedelta(minutes=i)).isoformat(),
            "counts": buckets.get(since + timedelta(minutes=i), {}),
        }
        for i in range(minutes)
    ]

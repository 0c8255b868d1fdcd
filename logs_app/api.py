"""HTTP API for log entries: batched ingest and filtered, paged reads."""

import json

from django.conf import settings
from django.http import HttpResponse
from ninja import Query, Router
from ninja import Status as Answer
from pydantic import Field

from live import dbthreads
from live.auth import ASYNC_AUTH
from live.validation import Clean, Instant
from logs_app import services
from logs_app.schemas import LogsCreated, LogsIn, LogsOut, RateOut
from sessions_app import access
from sessions_app.api import ERRORS, changeable_session, visible_session

router = Router(tags=["logs"])


@router.post(
    "/sessions/{int:session_id}/logs", response={201: LogsCreated, **ERRORS}, auth=ASYNC_AUTH
)
async def append_logs(request, session_id: int, payload: LogsIn):
    """Append log entries. Answers 201 once they are committed; an entry whose
    `uid` the session already has is skipped, so a retry stores nothing twice."""
    entries = [entry.model_dump() for entry in payload.entries]

    def append() -> dict:
        session = changeable_session(request, session_id)
        task_ids = {e["task_id"] for e in entries if e["task_id"] is not None}
        known = set(session.tasks.filter(pk__in=task_ids).values_list("pk", flat=True))
        access.refuse_foreign_tasks(
            known, ((f"entries.{n}.task_id", e["task_id"]) for n, e in enumerate(entries))
        )
        stored = services.append_entries(session_id, entries)
        return {
            "stored": len(stored),
            "skipped": len(entries) - len(stored),
            "seq": stored[-1].seq if stored else None,
            "first_id": str(stored[0].pk) if stored else None,
            "last_id": str(stored[-1].pk) if stored else None,
        }

    return Answer(201, await dbthreads.run(append))


class LogQuery(Clean):
    level: str | None = Field(None, description="minimum level, by name or number")
    task: str | None = Field(None, description="only lines of this task")
    q: str | None = Field(None, description="text in the message (any case)")
    since: Instant | None = Field(None, description="lines at or after this time (UTC if naive)")
    until: Instant | None = Field(None, description="lines at or before this time (UTC if naive)")
    limit: int | None = Field(None, ge=1, le=10000, description="default 100")
    before: int | None = Field(
        None, ge=1, le=2**62, description="page back: lines older than this id"
    )
    after: int | None = Field(
        None, ge=0, le=2**62, description="page forward: lines newer than this id"
    )


@router.get("/sessions/{int:session_id}/logs", response={200: LogsOut, **ERRORS})
def read_logs(request, session_id: int, query: Query[LogQuery]):
    """The newest `limit` matching lines, oldest first within the page.

    Page back with `before` set to the answer's `next_before`; page forward
    with `after`. Both together read the lines between two ids (for example
    the range of a log.skipped notice)."""
    visible_session(request, session_id)
    log_filter = services.LogFilter(
        level=services.parse_level(query.level),
        task_id=services.parse_id(query.task, "task"),
        q=query.q or "",
    )
    page = services.query(
        session_id,
        log_filter,
        limit=query.limit or settings.SWITCHBOARD["LOG_SNAPSHOT_LINES"],
        before=query.before,
        after=query.after,
        since=query.since,
        until=query.until,
    )
    entries = page.entries
    next_before = entries[0]["id"] if entries and page.has_more and query.after is None else None
    # Built here as the schema says; a page of 10,000 lines is not validated
    # again field by field on its way out (that cost more than the query).
    body = {"entries": entries, "has_more": page.has_more, "next_before": next_before}
    return HttpResponse(json.dumps(body), content_type="application/json")


class RateQuery(Clean):
    minutes: int = Field(60, ge=1, le=1440, description="how far back, in minutes")
    task: str | None = Field(None, description="only lines of this task")


@router.get("/sessions/{int:session_id}/logs/rate", response={200: RateOut, **ERRORS})
def log_rate(request, session_id: int, query: Query[RateQuery]):
    """Lines a minute by level, for the last `minutes` minutes (for the rate chart)."""
    visible_session(request, session_id)
    log_filter = services.LogFilter(task_id=services.parse_id(query.task, "task"))
    return {"buckets": services.rate(session_id, log_filter, minutes=query.minutes)}

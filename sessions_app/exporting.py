"""Event files written from the event log (the format: sessions_app.eventfiles)."""

from collections.abc import Callable
from typing import IO

from django.db.models import Count

from live import events, ordering
from live.models import Event
from sessions_app.models import Session


def export(
    out: IO[str],
    *,
    session_id: int | None = None,
    since: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write events after `since` (of one session, or all) as JSON Lines; returns the count."""
    rows = Event.objects.filter(id__gt=since).order_by("id")
    rows = ordering.up_to_horizon(rows)  # across channels, ids may commit out of order
    if session_id is not None:
        rows = rows.filter(session_id=session_id)
    total = rows.count()
    keys: dict[int, str] = {}
    written = 0
    batch: list[Event] = []
    for event in rows.iterator(chunk_size=1000):
        batch.append(event)
        if len(batch) == 1000:
            written += _write_batch(out, batch, keys)
            batch = []
            if progress:
                progress(written, total)
    written += _write_batch(out, batch, keys)
    if progress:
        progress(written, total)
    return written


def _keys(session_ids: set[int]) -> dict[int, str]:
    """What names each session in a file: its external_id when
    Session.objects.by_key finds it by that alone (ownerless, or the one owner
    with that external_id), else its id."""
    rows = list(
        Session.objects.filter(pk__in=session_ids).values_list("pk", "external_id", "owner_id")
    )
    shared = {external_id for _, external_id, owner_id in rows if owner_id is not None}
    # Owned external ids that an ownerless session or another owner shares.
    shared = set(
        Session.objects.filter(external_id__in=shared - {None})
        .values("external_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .values_list("external_id", flat=True)
    )
    keys = {}
    for pk, external_id, owner_id in rows:
        unique = external_id and (owner_id is None or external_id not in shared)
        keys[pk] = external_id if unique else str(pk)
    return keys


def _write_batch(out: IO[str], batch: list[Event], keys: dict[int, str]) -> int:
    missing = {e.session_id for e in batch if e.session_id is not None} - set(keys)
    keys.update(_keys(missing))
    frames = events.frames_for(batch)
    for event, stored in zip(batch, frames, strict=True):
        line = {
            "ts": event.ts.isoformat(),
            "event": event.kind,
            "session": keys.get(event.session_id, str(event.session_id)),
            "seq": event.id,
            "data": stored.frame["data"],
        }
        if event.task_id is not None:
            line["task"] = str(event.task_id)
        out.write(events.dumps(line) + "\n")
    return len(batch)

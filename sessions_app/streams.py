"""The channels a client can subscribe to: names, access, snapshots, resume.

Shared by the socket consumer and the events API so both answer the same
question the same way.
"""

import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count

from logs_app import services as log_services
from sessions_app import access, events, stats
from sessions_app.models import Session, Task
from sessions_app.services import task_output

CHANNEL_RE = re.compile(r"^(sessions|tasks|system)$|^(session|task|logs):([1-9][0-9]{0,17})$")
SESSIONS_SNAPSHOT_SIZE = 100


class ChannelError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ChannelRef:
    name: str
    kind: str  # sessions, tasks, session, task, logs, system
    id: int | None = None


def parse(name) -> ChannelRef:
    if not isinstance(name, str):
        raise ChannelError("invalid_channel", "channel must be a string")
    match = CHANNEL_RE.match(name)
    if not match:
        raise ChannelError("invalid_channel", f"unknown channel {name[:100]!r}")
    if match.group(1):
        return ChannelRef(name=name, kind=match.group(1))
    return ChannelRef(name=name, kind=match.group(2), id=int(match.group(3)))


# Channels that carry every visible session's events, filtered per user.
SHARED = {"sessions": "id", "tasks": "session_id"}


def check_access(user, ref: ChannelRef) -> Session | Task | None:
    """The object behind a channel, if the user may see it; ChannelError if not."""
    if ref.kind in SHARED:
        return None
    if ref.kind == "system":
        if not user.is_staff:
            raise ChannelError("forbidden", "the system channel is for staff only")
        return None
    if ref.kind == "task":
        task = access.visible_tasks(user).filter(pk=ref.id).first()
        if task is None:
            raise ChannelError("invalid_channel", f"no task {ref.id} that you can see")
        return task
    session = access.visible_sessions(user).filter(pk=ref.id).first()
    if session is None:
        raise ChannelError("invalid_channel", f"no session {ref.id} that you can see")
    return session


def listing(name: str, visible) -> dict:
    """The newest items of a shared channel, with counts by status."""
    counts = dict(visible.order_by().values_list("status").annotate(n=Count("id")))
    return {
        name: [item.as_json() for item in visible.order_by("-id")[:SESSIONS_SNAPSHOT_SIZE]],
        "counts": counts,
        "total": sum(counts.values()),
    }


def snapshot(user, ref: ChannelRef, obj, log_filter: log_services.LogFilter) -> dict:
    if ref.kind == "sessions":
        return listing("sessions", access.visible_sessions(user))
    if ref.kind == "tasks":
        return listing("tasks", access.visible_tasks(user))
    if ref.kind == "session":
        return {"session": obj.as_json(), "tasks": [t.as_json() for t in obj.tasks.order_by("id")]}
    if ref.kind == "task":
        return {"task": obj.as_json(), "output": task_output(obj)}
    if ref.kind == "logs":
        page = log_services.query(
            ref.id, log_filter, limit=settings.SWITCHBOARD["LOG_SNAPSHOT_LINES"]
        )
        return {"entries": [e.as_json() for e in page.entries], "has_more": page.has_more}
    return {"stats": stats.snapshot()}


@dataclass
class Opened:
    cursor: int
    snapshot: dict | None
    reset: bool


def open_channel(user, ref: ChannelRef, since: int | None, log_filter) -> Opened:
    """Check access, then return the cursor and, unless resuming, the snapshot.

    The cursor is read before the snapshot: the snapshot is then at least as
    new as the cursor, and anything after the cursor follows as events.
    A `since` older than what is kept, or newer than anything stored (a
    client of a database that was reset), gets a fresh snapshot and reset.
    """
    obj = check_access(user, ref)
    if ref.kind == "system":
        return Opened(events.newest_seq(), snapshot(user, ref, obj, log_filter), False)
    reset = False
    if since is not None:
        reset = since < events.pruned_through() or since > events.newest_seq()
        if not reset:
            return Opened(since, None, False)
    cursor = events.channel_head(ref.name)
    return Opened(cursor, snapshot(user, ref, obj, log_filter), reset)


def read_visible(user, ref: ChannelRef, since: int, limit: int) -> tuple[list[dict], int]:
    """Stored frames of a channel after `since` that the user may see, and the
    seq the reader is then at (past frames it may not see too)."""
    stored = events.read_channel(ref.name, since, limit)
    cursor = stored[-1].seq if stored else since
    frames = [s.frame for s in stored]
    if ref.kind in SHARED and not access.sees_all(user):
        key = SHARED[ref.kind]
        ids = [int(f["data"][key]) for f in frames]
        owned = Session.objects.filter(owner_id=user.pk, pk__in=ids).values_list("pk", flat=True)
        mine = {str(pk) for pk in owned}
        frames = [f for f in frames if f["data"][key] in mine]
    return frames, cursor


def filter_entries(frame: dict, log_filter: log_services.LogFilter) -> dict | None:
    """A log.append frame with only the entries that pass the filter (None if none do)."""
    entries = [e for e in frame["data"]["entries"] if log_filter.matches(e)]
    if not entries:
        return None
    return dict(frame, data={"entries": entries})

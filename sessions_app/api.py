"""HTTP API for sessions, tasks, events and stats (mounted at /api/v1/ by project/api.py)."""

from typing import Any

from django.db.models import Q, QuerySet
from ninja import Query, Router
from ninja import Status as Answer
from pydantic import Field

from live import dbthreads, events, ordering, stats, streams
from live.auth import ASYNC_AUTH
from live.errors import Refused
from live.models import Event
from live.validation import Clean
from sessions_app import access, locks, output, resend, services
from sessions_app.models import TASK_STATUSES, Session, Status, Task
from sessions_app.schemas import (
    CancelOut,
    ErrorOut,
    EventsOut,
    OutputIn,
    OutputOut,
    PauseOut,
    RetryOut,
    SessionIn,
    SessionOut,
    SessionPage,
    SessionPatch,
    SnapshotOut,
    StatsOut,
    TaskIn,
    TaskOut,
    TaskOutputOut,
    TaskPage,
    TaskPatch,
)

router = Router()
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}
RETRY_ERRORS = {**ERRORS, 503: ErrorOut}  # the Celery broker did not take it


class ListQuery(Clean):
    status: str | None = Field(None, description="one status, or several separated by commas")
    q: str | None = Field(None, description="text in the name or external id")
    external_id: str | None = Field(
        None, min_length=1, max_length=200, description="exactly this external id"
    )
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31)


class TaskListQuery(ListQuery):
    session: int | None = Field(None, ge=1, le=2**62, description="only tasks of this session")


def _statuses(raw: str | None, allowed: list[str]) -> list[str] | None:
    if not raw:
        return None
    wanted = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in wanted if s not in allowed]
    if bad:
        raise Refused(f"unknown status {bad[0]!r}; one of {', '.join(allowed)}", field="status")
    return wanted


def known_parameters(request, query: ListQuery) -> None:
    """Refuse a query parameter the list does not take, by name: a typo
    (`session_id` for `session`) would otherwise list everything, unfiltered."""
    unknown = sorted(set(request.GET) - set(type(query).model_fields))
    if unknown:
        taken = ", ".join(sorted(type(query).model_fields))
        raise Refused(f"unknown parameter; this list takes {taken}", field=unknown[0])


def _page(queryset: QuerySet, query: ListQuery) -> dict:
    count = queryset.count()
    rows = queryset[query.offset : query.offset + query.limit]
    end = query.offset + query.limit
    return {
        "results": [row.as_json() for row in rows],
        "count": count,
        "limit": query.limit,
        "offset": query.offset,
        "next_offset": end if end < count else None,
    }


def visible_session(request, session_id: int) -> Session:
    return access.visible_session(request.auth, session_id)


def changeable_session(request, session_id: int) -> Session:
    session = visible_session(request, session_id)
    if not access.can_change(request.auth, session):
        raise Refused("you may not change this session", code="forbidden")
    return session


def may_change(request, what: str = "task") -> locks.Check:
    """For a service that reads or locks a task's (or a session's) session:
    refuse one the caller cannot see (404) or may not change (403), in the
    service's own query rather than one of its own."""
    user = request.auth

    def check(session: Session) -> None:
        if not access.can_see(user, session):
            raise Refused(f"no {what} that you can see", code="not_found")
        if not access.can_change(user, session):
            raise Refused(f"you may not change this {what}", code="forbidden")

    return check


def changeable_task(request, task_id: int) -> Task:
    # The same rule, and the same answers, as the socket's cancel_task.
    return access.changeable_task(request.auth, task_id)


# --- sessions ---------------------------------------------------------------------


@router.post("/sessions", response={200: SessionOut, 201: SessionOut, **ERRORS}, tags=["sessions"])
def create_session(request, payload: SessionIn):
    """Create a session. With an `external_id` the caller has used already, answer
    that session (200). External ids are unique per owner: another user's (even
    for staff, who may change every session) names a new session of the caller."""
    session, created = services.create_session(
        name=payload.name,
        metadata=payload.metadata or {},
        external_id=payload.external_id,
        owner=request.auth,
        status=payload.status,
    )
    return Answer(201 if created else 200, session.as_json())


@router.get("/sessions", response={200: SessionPage, **ERRORS}, tags=["sessions"])
def list_sessions(request, query: Query[ListQuery]):
    known_parameters(request, query)
    sessions = access.visible_sessions(request.auth).order_by("-id")
    statuses = _statuses(query.status, list(Status.values))
    if statuses:
        sessions = sessions.filter(status__in=statuses)
    if query.q:
        sessions = sessions.filter(Q(name__icontains=query.q) | Q(external_id__icontains=query.q))
    if query.external_id is not None:
        sessions = sessions.filter(external_id=query.external_id)
    return _page(sessions, query)


@router.get("/sessions/{int:session_id}", response={200: SessionOut, **ERRORS}, tags=["sessions"])
def get_session(request, session_id: int):
    return visible_session(request, session_id).as_json()


@router.patch("/sessions/{int:session_id}", response={200: SessionOut, **ERRORS}, tags=["sessions"])
def patch_session(request, session_id: int, payload: SessionPatch):
    changeable_session(request, session_id)
    fields = payload.model_dump(exclude_unset=True)
    if "metadata" in fields and fields["metadata"] is None:
        raise Refused("must be an object", field="metadata")
    if "name" in fields and fields["name"] is None:
        raise Refused("must not be null", field="name")
    return services.update_session(session_id, **fields).as_json()


@router.post(
    "/sessions/{int:session_id}/cancel", response={200: SessionOut, **ERRORS}, tags=["sessions"]
)
def cancel_session(request, session_id: int):
    """Cancel the session and every task of it that has not ended (an act:
    operators, owners and those who change every session; 403 for a viewer)."""
    access.actable_session(request.auth, session_id)
    return services.cancel_session(session_id, by=request.auth.get_username()).as_json()


# --- tasks --------------------------------------------------------------------------


@router.post(
    "/sessions/{int:session_id}/tasks",
    response={200: TaskOut, 201: TaskOut, **ERRORS},
    tags=["tasks"],
)
def create_task(request, session_id: int, payload: TaskIn):
    """Create a task. With an `external_id` the session has already, answer that task (200)."""
    changeable_session(request, session_id)
    task, created = services.create_task(
        session_id,
        name=payload.name,
        external_id=payload.external_id,
        status=payload.status,
        stale_after=payload.stale_after,
    )
    return Answer(201 if created else 200, task.as_json())


@router.get("/tasks", response={200: TaskPage, **ERRORS}, tags=["tasks"])
def list_tasks(request, query: Query[TaskListQuery]):
    known_parameters(request, query)
    tasks = access.visible_tasks(request.auth).order_by("-id")
    if query.session is not None:
        tasks = tasks.filter(session_id=query.session)
    statuses = _statuses(query.status, [s.value for s in TASK_STATUSES])
    if statuses:
        tasks = tasks.filter(status__in=statuses)
    if query.q:
        tasks = tasks.filter(Q(name__icontains=query.q) | Q(external_id__icontains=query.q))
    if query.external_id is not None:
        tasks = tasks.filter(external_id=query.external_id)
    return _page(tasks, query)


@router.get("/tasks/{int:task_id}", response={200: TaskOut, **ERRORS}, tags=["tasks"])
def get_task(request, task_id: int):
    return access.visible_task(request.auth, task_id).as_json()


def report_fields(payload: TaskPatch, prefix: str = "") -> dict:
    """The fields a report sets; null only where it means "none"."""
    fields = payload.model_dump(exclude_unset=True)
    for name in ("status", "progress", "message", "details", "name"):
        if name in fields and fields[name] is None:
            raise Refused("must not be null", field=prefix + name)
    if "error" in fields and fields["error"] is None:
        fields["error"] = ""
    return fields


@router.patch(
    "/tasks/{int:task_id}", response={200: TaskOut, **ERRORS}, tags=["tasks"], auth=ASYNC_AUTH
)
async def patch_task(request, task_id: int, payload: TaskPatch):
    """Report on a task. `progress`, `message` or `details` record one progress.update."""
    fields = report_fields(payload)

    def report() -> dict:
        return services.update_task(task_id, check=may_change(request), **fields).as_json()

    return await dbthreads.run(report)


@router.post("/tasks/{int:task_id}/cancel", response={200: CancelOut, **ERRORS}, tags=["tasks"])
def cancel_task(request, task_id: int):
    """Pending: cancelled at once. Running: `cancel_requested`. Ended: left as it is."""
    changeable_task(request, task_id)
    task, changed = services.cancel_task(task_id, by=request.auth.get_username())
    return {"task": task.as_json(), "changed": changed}


@router.post("/tasks/{int:task_id}/pause", response={200: PauseOut, **ERRORS}, tags=["tasks"])
def pause_task(request, task_id: int):
    """Ask the worker to hold (`pause_requested`). Ended: 409. Paused already: changed false."""
    changeable_task(request, task_id)
    task, changed = services.pause_task(task_id, by=request.auth.get_username())
    return {"task": task.as_json(), "changed": changed}


@router.post("/tasks/{int:task_id}/resume", response={200: PauseOut, **ERRORS}, tags=["tasks"])
def resume_task(request, task_id: int):
    """Let a paused task's worker go on. Not paused: changed false."""
    changeable_task(request, task_id)
    task, changed = services.resume_task(task_id, by=request.auth.get_username())
    return {"task": task.as_json(), "changed": changed}


@router.post("/tasks/{int:task_id}/retry", response={200: RetryOut, **RETRY_ERRORS}, tags=["tasks"])
def retry_task(request, task_id: int):
    """A new attempt of an ended task; `sent`: what went out (sessions_app/resend.py)."""
    changeable_task(request, task_id)
    send = resend.asked_to_send(request)  # an empty body, or {"send": false}
    task, sent = resend.retry(task_id, by=request.auth.get_username(), send=send)
    return {**task.as_json(), "sent": sent}


@router.post(
    "/tasks/{int:task_id}/output",
    response={201: OutputOut, **ERRORS},
    tags=["tasks"],
    auth=ASYNC_AUTH,
)
async def post_output(request, task_id: int, payload: OutputIn):
    """Append a chunk of streamed output (`final: true` marks the end), or a
    status step between chunks: `status`, optional `message` and `data`."""

    def append() -> dict:
        check = may_change(request)
        uid = payload.uid
        if payload.status is not None:
            seq = output.append_step(
                task_id, payload.status, payload.message, payload.data, check=check, uid=uid
            )
        else:
            seq = output.append_output(task_id, payload.chunk, payload.final, check=check, uid=uid)
        return {"seq": seq, "task": Task.objects.get(pk=task_id).as_json()}

    return Answer(201, await dbthreads.run(append))


@router.get("/tasks/{int:task_id}/output", response={200: TaskOutputOut, **ERRORS}, tags=["tasks"])
def get_output(request, task_id: int):
    """The streamed output of the current attempt (its last 64 KiB)."""
    task = access.visible_task(request.auth, task_id)
    return output.task_output(task)


# --- events and stats --------------------------------------------------------------


class EventsQuery(Clean):
    channel: str | None = Field(None, description="one channel; all you can see if omitted")
    since: int = Field(0, ge=0, le=2**62, description="only events with a greater seq")
    limit: int = Field(500, ge=1, le=5000)
    level: str | None = Field(None, description="logs channels: minimum level")
    task: str | None = Field(None, description="logs channels: only lines of this task")
    q: str | None = Field(None, description="logs channels: text in the message")


@router.get("/events", response={200: EventsOut, **ERRORS}, tags=["events"])
def list_events(request, query: Query[EventsQuery]):
    """Stored events after `since`, oldest first, as the socket sends them.

    For polling clients: ask again with `since` set to the answer's `seq`.
    `reset: true` means `since` is older than what is kept (or unknown here):
    fetch the current state again.
    """
    user = request.auth
    reset = events.must_reset(query.since)
    if query.channel is None:
        rows = Event.objects.filter(id__gt=query.since).order_by("id")
        rows = ordering.up_to_horizon(rows)  # across channels, ids may commit out of order
        if not access.sees_all(user):
            rows = rows.filter(owner_id=user.pk)  # deleted sessions' events too
        batch = list(rows[: query.limit + 1])
        stored = events.frames_for(batch[: query.limit])
        frames = [s.frame for s in stored]
        cursor = stored[-1].seq if stored else query.since
        has_more = len(batch) > query.limit
    else:
        ref, narrowing = _channel(user, query)
        stream = ref.stream
        frames, cursor = streams.read_visible(user, ref, query.since, query.limit)
        # After the read: events deleted before it, or between its statements, show here.
        reset = streams.must_reset(ref, query.since)
        frames = [f for f in (stream.narrow(f, narrowing) for f in frames) if f is not None]
        has_more = events.channel_head(ref.name) > cursor
    return {"results": frames, "seq": cursor, "has_more": has_more, "reset": reset}


def _channel(user, query) -> tuple[streams.ChannelRef, Any]:
    """The channel a query names, checked for access, and its filter
    (level, task and q narrow a logs channel; other channels ignore them)."""
    ref = streams.parse(query.channel)
    streams.check_readable(user, ref)
    if ref.kind == "system":
        raise streams.ChannelError("invalid_channel", "the system channel is live only")
    raw = {k: getattr(query, k) for k in ("level", "task", "q") if getattr(query, k)}
    narrowing = ref.stream.parse_filter(raw if ref.stream.filters else None)
    return ref, narrowing


class SnapshotQuery(Clean):
    channel: str = Field(description="the channel, as in a subscribe frame")
    level: str | None = Field(None, description="logs channels: minimum level")
    task: str | None = Field(None, description="logs channels: only lines of this task")
    q: str | None = Field(None, description="logs channels: text in the message")


@router.get("/snapshot", response={200: SnapshotOut, **ERRORS}, tags=["events"])
def get_snapshot(request, query: Query[SnapshotQuery]):
    """What a `subscribed` reply carries: the channel's state and the seq it includes.

    For clients that cannot hold a socket: take the snapshot, then poll
    /events with `since` set to its `seq`."""
    ref, narrowing = _channel(request.auth, query)
    opened = streams.open_channel(request.auth, ref, None, narrowing)
    return {"channel": ref.name, "seq": opened.cursor, "snapshot": opened.snapshot}


@router.get("/stats", response={200: StatsOut, **ERRORS}, tags=["stats"])
def get_stats(request):
    """Connections, subscriptions and frames of every live server process
    (each reports every 5 s), and the event rate of the last 10 s.

    Staff see all of it. Anyone else sees the totals of connections and
    frames, the channels they may subscribe to, and the event rate and newest
    seq of their own sessions; not the processes (hosts, pids, their figures)."""
    user = request.auth
    figures = stats.snapshot()
    if user.is_staff and access.sees_all(user):
        return figures
    visible = streams.visible_names(user, figures["subscriptions"])
    figures["subscriptions"] = {n: c for n, c in figures["subscriptions"].items() if n in visible}
    figures["channels"] = len(figures["subscriptions"])
    if not access.sees_all(user):
        figures.update(stats.event_figures(owner_id=user.pk))
    figures.update(process="", processes=[])
    return figures

"""A task's streamed output and its steps: appended as events, read back as a tail."""

from datetime import datetime

from live.errors import Refused
from live.validation import json_size
from sessions_app import channels, rules
from sessions_app.locks import Check
from sessions_app.models import OutputKey, Session, Status, Task
from sessions_app.recording import record_output, service_write
from sessions_app.reports import refuse_if_lost

# A status step's name, and how many of an attempt's steps a snapshot carries.
MAX_STEPS = 200
# Bytes of steps a snapshot carries at most (each step's data and message are
# bounded where they come in; see validation.LIMITS).
STEPS_BUDGET = 128 * 1024


def append_output(
    task_id: int,
    chunk: str,
    final: bool = False,
    ts: datetime | None = None,
    check: Check | None = None,
    uid: str | None = None,
) -> int:
    """Record one chunk of a task's streamed output (tokens, stdout); its seq.
    `check(session)`, when given, may refuse it first. With a `uid` seen
    before on this task, nothing is stored and the first one's seq is answered."""
    return _output(task_id, chunk_fields(chunk, final), ts, check, uid)


def append_step(
    task_id: int,
    status: str,
    message: str | None = None,
    data: dict | None = None,
    ts: datetime | None = None,
    check: Check | None = None,
    uid: str | None = None,
) -> int:
    """Record a status step in a task's output stream (thinking, a tool call
    and its end), in order with the chunks; nothing is overwritten; its seq.
    `check`, `uid`: as for append_output."""
    return _output(task_id, step_fields(status, message, data), ts, check, uid)


def chunk_fields(chunk: str, final: bool = False) -> dict:
    """An output chunk's fields."""
    return {"chunk": chunk, "final": bool(final)}


def step_fields(status: str, message: str | None = None, data: dict | None = None) -> dict:
    """A step's fields, checked."""
    if not isinstance(status, str) or not rules.STEP_RE.match(status):
        raise Refused("a step's status is a lowercase word (a-z and _, at most 32)", field="status")
    if data is not None and not isinstance(data, dict):
        raise Refused("a step's data is a JSON object", field="data")
    if message is not None and not isinstance(message, str):
        raise Refused("a step's message is text", field="message")
    return {"status": status, "message": message or "", "data": data or {}}


def _output(
    task_id: int, fields: dict, ts: datetime | None, check: Check | None, uid: str | None
) -> int:
    with service_write():
        task = (
            Task.objects.select_related("session")
            .only(
                "id",
                "session_id",
                "attempt",
                "status",
                "error",
                "lost",
                "finished_at",
                "session__owner_id",
            )
            .get(pk=task_id)
        )
        if check is not None:
            check(task.session)
        if uid is not None:
            # The session's row lock, as a batch takes it: two tries of one uid
            # take turns, and the second finds the first's key.
            lock_session(task.session_id)
            seen = stored_keys(task.pk, [uid])
            if uid in seen:
                return seen[uid]
        refuse_if_lost(task)
        event = record_output(task, task.session.owner_id, fields, ts=ts)
        if uid is not None:
            OutputKey.objects.create(task_id=task.pk, uid=uid, seq=event.id)
        return event.id


def lock_session(session_id: int) -> None:
    Session.objects.select_for_update(no_key=True).filter(pk=session_id).values_list("pk").first()


def keys_seen(items) -> set[tuple[int, str]]:
    """Of a batch's output items, the (task, uid) pairs stored before (one query)."""
    wanted = [(item.task_id, item.uid) for item in items if item.uid is not None]
    if not wanted:
        return set()
    tasks = {task_id for task_id, _ in wanted}
    uids = {uid for _, uid in wanted}
    found = OutputKey.objects.filter(task_id__in=tasks, uid__in=uids).values_list("task_id", "uid")
    return set(found) & set(wanted)


def keep_keys(keys: list) -> None:
    """Store the uids of output just recorded: (task id, uid, its event, stored)."""
    if keys:
        OutputKey.objects.bulk_create(
            OutputKey(task_id=task_id, uid=uid, seq=event.id) for task_id, uid, event in keys
        )


def stored_keys(task_id: int, uids: list[str]) -> dict[str, int]:
    """Of these uids of a task's output, those stored before, with their seqs."""
    found = OutputKey.objects.filter(task_id=task_id, uid__in=uids).values_list("uid", "seq")
    return dict(found)


def latest_steps(session: Session, scan: int = 500) -> dict:
    """The newest step of each running task of the session, by task id, from
    the newest `scan` events of its channel (steps are placed there too)."""
    from live.models import Event, EventChannel

    running = set(session.tasks.filter(status=Status.RUNNING).values_list("pk", flat=True)[:200])
    if not running:
        return {}
    recent = EventChannel.objects.filter(channel=channels.session(session.pk)).order_by("-event_id")
    ids = list(recent.values_list("event_id", flat=True)[:scan])
    found = {}
    rows = (
        Event.objects.filter(pk__in=ids, kind="task.output", task_id__in=running)
        .order_by("-id")
        .values_list("id", "ts", "task_id", "data")
    )
    size = 0
    for seq, ts, task_id, data in rows:
        if str(task_id) not in found and "status" in data:
            step = {k: data.get(k) for k in ("status", "message", "data")}
            step = {**step, "seq": seq, "ts": ts.isoformat()}
            size += json_size(step)
            if size > STEPS_BUDGET and found:
                break  # a snapshot frame has room for so much
            found[str(task_id)] = step
    return found


def task_output(task: Task, limit_chars: int = 65536) -> dict:
    """The streamed output of the task's current attempt: its tail, and whether it ended."""
    from live.models import Event

    chunks = []
    steps = []
    size = steps_size = 0
    final = None
    rows = (
        Event.objects.filter(task_id=task.pk, kind="task.output", session_id=task.session_id)
        .order_by("-id")
        .values_list("id", "ts", "data")
    )
    for scanned, (seq, ts, data) in enumerate(rows.iterator()):
        if data.get("attempt", 1) != task.attempt:
            break
        if size >= limit_chars and scanned > 2000:
            break  # enough text; older steps are in the event log
        if "status" in data and "chunk" not in data:
            if len(steps) < MAX_STEPS and steps_size <= STEPS_BUDGET:
                step = {k: data.get(k) for k in ("status", "message", "data")}
                steps_size += json_size(step)
                if steps_size > STEPS_BUDGET and steps:
                    continue  # the newest steps that fit in a frame
                # `after`: characters of output that came after it, for placing it.
                steps.append({**step, "seq": seq, "ts": ts.isoformat(), "after": size})
            continue
        if final is None:
            final = bool(data.get("final"))
        if size < limit_chars:
            chunks.append(data.get("chunk", ""))
            size += len(chunks[-1])
        elif len(steps) >= MAX_STEPS or steps_size > STEPS_BUDGET:
            break
    text = "".join(reversed(chunks))[-limit_chars:]
    for step in steps:
        # Where in `text` it came: 0 when before the kept tail.
        step["at"] = max(0, len(text) - step.pop("after"))
    return {
        "text": text,
        "final": bool(final),
        "truncated": size > limit_chars,
        "steps": list(reversed(steps)),
    }

"""Failures announced: `system.alert` events and outgoing webhooks.

When a task or a session ends failed or cancelled (a task also when it is
failed as lost), the service write that did it records one `system.alert` on
the staff-only `system` channel, in the same transaction, after the object's
own update. A session that ends takes its tasks' alerts into its own (one
alert, not one per task).

In that same transaction each alert becomes one row of the outbox per
webhook (the URLs of `SWITCHBOARD_WEBHOOKS`, comma separated, and the active
`Webhook` rows of the admin): `operations.outbox` POSTs them as JSON after
commit, with retries, and a restart loses none (`operations.webhooks` is the
HTTP part). The body has a Slack-compatible `text` (the names and the error
in it escaped: `&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;`, so no user text
becomes a mention or a link), the `event` name, and the `session` and `task`
as they are. A write never waits for delivery.
"""

from contextvars import ContextVar

from live import events
from operations import outbox
from sessions_app.models import Session, Status, Task

ENDS = {Status.FAILED, Status.CANCELLED}

# The objects that ended during the outermost service write, in order.
_ended: ContextVar[list | None] = ContextVar("switchboard_ended", default=None)


def collecting():
    """Start collecting ended objects for this write; a token for `flush`."""
    if _ended.get() is not None:
        return None
    return _ended.set([])


def ended(obj: Session | Task, status: str) -> None:
    """Called when an object's status changes to `status`."""
    pending = _ended.get()
    if pending is not None and status in ENDS:
        pending.append(obj)


def abandon(token) -> None:
    _ended.reset(token)


def flush(token) -> None:
    """Record the alerts of this write (inside its transaction) and stop collecting."""
    if token is None:
        return
    pending = _ended.get() or []
    _ended.reset(token)
    sessions = {o.pk: o for o in pending if isinstance(o, Session) and o.status in ENDS}
    seen = set()
    for obj in pending:
        key = (type(obj).__name__, obj.pk)
        if key in seen or obj.status not in ENDS:
            continue
        seen.add(key)
        if isinstance(obj, Task):
            session = sessions.get(obj.session_id)
            if session is not None and session.status == obj.status:
                continue  # told in the session's alert
        _record(obj)


def slack_escape(text: str) -> str:
    """User text made plain inside Slack's `text` markup, where `<!channel>`,
    `<@U…>` and `<url|label>` are mentions and links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _describe(obj: Session | Task) -> dict:
    """The alert for an ended object. Its `text` is Slack markup, so the user's
    words in it (names, the error) are escaped; the structured fields are not."""
    if isinstance(obj, Task):
        session = Session.objects.only("id", "name", "status").get(pk=obj.session_id)
        event = "task.stale" if obj.lost else f"task.{obj.status}"
        words = {
            "task.stale": "went silent and was failed",
            "task.failed": "failed",
            "task.cancelled": "was cancelled",
        }
        text = (
            f"Task “{slack_escape(obj.name)}” (#{obj.pk}) of “{slack_escape(session.name)}”"
            f" {words[event]}"
        )
        if obj.error:
            text += f": {slack_escape(obj.error.splitlines()[0][:300])}"
        task = {"id": str(obj.pk), "name": obj.name, "status": obj.status, "error": obj.error}
        return {
            "event": event,
            "level": "warning" if obj.status == Status.CANCELLED else "error",
            "text": text,
            "session": {"id": str(session.pk), "name": session.name, "status": session.status},
            "task": task,
        }
    unfinished = obj.tasks.filter(status=obj.status).count()
    text = f"Session “{slack_escape(obj.name)}” (#{obj.pk}) " + (
        "failed" if obj.status == Status.FAILED else "was cancelled"
    )
    if unfinished:
        text += f" with {unfinished} task{'s' if unfinished != 1 else ''} {obj.status}"
    return {
        "event": f"session.{obj.status}",
        "level": "warning" if obj.status == Status.CANCELLED else "error",
        "text": text,
        "session": {"id": str(obj.pk), "name": obj.name, "status": obj.status},
        "task": None,
    }


def _record(obj: Session | Task) -> None:
    data = _describe(obj)
    hooks = outbox.targets()  # read before the event lock is taken
    session_id = int(data["session"]["id"])
    task_id = int(data["task"]["id"]) if data["task"] else None
    event = events.record(
        "system.alert", ["system"], session_id=session_id, task_id=task_id, data=data
    )
    outbox.enqueue({**data, "seq": event.id, "ts": event.ts.isoformat()}, hooks)

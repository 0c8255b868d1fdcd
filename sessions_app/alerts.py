"""Failures announced: `system.alert` events and outgoing webhooks.

When a task or a session ends failed or cancelled (a task also when it is
failed as lost), the service write that did it records one `system.alert` on
the staff-only `system` channel, in the same transaction, after the object's
own update. A session that ends takes its tasks' alerts into its own (one
alert, not one per task).

After commit, each alert is POSTed as JSON to every webhook: the URLs of
`SWITCHBOARD_WEBHOOKS` (comma separated) and the active `Webhook` rows of the
admin. The body has a Slack-compatible `text` (the names and the error in it
escaped: `&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;`, so no user text becomes a
mention or a link), the `event` name, and the `session` and `task` as they
are. Delivery is a thread of its own with a bounded queue:
a write never waits for it. A failed delivery is tried again after 1, 4, 16
and 64 s (five tries in all); failures are counted in the metrics and shown
on the webhook's admin row.
"""

import heapq
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from sessions_app import events, stats
from sessions_app.models import Session, Status, Task, Webhook

log = logging.getLogger(__name__)

ENDS = {Status.FAILED, Status.CANCELLED}
LOST = "no report for"
BACKOFF = [1, 4, 16, 64]
TIMEOUT = 5

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
        lost = obj.status == Status.FAILED and obj.error.startswith(LOST)
        event = "task.stale" if lost else f"task.{obj.status}"
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
    session_id = int(data["session"]["id"])
    task_id = int(data["task"]["id"]) if data["task"] else None
    event = events.record(
        "system.alert", ["system"], session_id=session_id, task_id=task_id, data=data
    )
    body = {**data, "seq": event.id, "ts": event.ts.isoformat()}
    transaction.on_commit(lambda: sender.send(body))


# --- webhooks ---------------------------------------------------------------------


def targets() -> list[tuple[int | None, str]]:
    """(row id or None, url) of every webhook to call."""
    found = [(None, url) for url in settings.SWITCHBOARD["WEBHOOKS"]]
    found += list(Webhook.objects.filter(active=True).values_list("pk", "url"))
    return [(hook, url) for hook, url in found if url.startswith(("http://", "https://"))]


@dataclass(order=True)
class Delivery:
    due: float
    attempt: int = field(compare=False)
    hook: int | None = field(compare=False)
    url: str = field(compare=False)
    body: bytes = field(compare=False)


class Sender:
    """One thread per process that POSTs alerts, with retries on a schedule."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.queue: list[Delivery] = []
        self.wake = threading.Condition()
        self.thread: threading.Thread | None = None

    def send(self, alert: dict) -> None:
        try:
            hooks = targets()
        except Exception:
            log.exception("could not read the webhooks")
            return
        if not hooks:
            return
        body = json.dumps(alert).encode()
        with self.wake:
            for hook, url in hooks:
                if len(self.queue) >= self.limit:
                    log.warning(
                        "webhook queue full: alert seq %s not sent to %s", alert["seq"], url
                    )
                    stats.live.webhook_failed()
                    continue
                heapq.heappush(self.queue, Delivery(time.monotonic(), 0, hook, url, body))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="webhooks", daemon=True)
                self.thread.start()
            self.wake.notify()

    def run(self) -> None:
        while True:
            with self.wake:
                while not self.queue or self.queue[0].due > time.monotonic():
                    wait = self.queue[0].due - time.monotonic() if self.queue else None
                    self.wake.wait(wait)
                delivery = heapq.heappop(self.queue)
            self.deliver(delivery)

    def deliver(self, delivery: Delivery) -> None:
        request = urllib.request.Request(
            delivery.url,
            data=delivery.body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "switchboard-webhooks"},
        )
        error = None
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                status = response.status
        except urllib.error.HTTPError as failure:
            status, error = failure.code, f"HTTP {failure.code}"
        except (OSError, ValueError) as failure:
            status, error = None, str(failure)[:500]
        if error is not None:
            stats.live.webhook_failed()
            retry = delivery.attempt < len(BACKOFF)
            log.warning(
                "webhook %s failed (%s)%s",
                delivery.url,
                error,
                f"; again in {BACKOFF[delivery.attempt]} s" if retry else "; giving up",
            )
            if retry:
                delivery.due = time.monotonic() + BACKOFF[delivery.attempt]
                delivery.attempt += 1
                with self.wake:
                    heapq.heappush(self.queue, delivery)
        self.note(delivery.hook, status, error)

    @staticmethod
    def note(hook: int | None, status: int | None, error: str | None) -> None:
        """Show the outcome on the webhook's admin row."""
        if hook is None:
            return
        try:
            now = timezone.now()
            if error is None:
                Webhook.objects.filter(pk=hook).update(last_status=status, last_sent_at=now)
            else:
                row = Webhook.objects.filter(pk=hook)
                row.update(
                    last_status=status,
                    last_error=error,
                    last_failed_at=now,
                    failures=F("failures") + 1,
                )
        except Exception:
            log.exception("could not note a webhook's outcome")
        finally:
            close_old_connections()


sender = Sender()

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
are. A write never waits for delivery.

Receivers are untrusted. Each URL has a thread and a queue of its own (at most
`LANES` URLs at a time, `limit` deliveries queued in all), so a slow receiver
holds up only its own alerts. A delivery has `DEADLINE` seconds in all to
connect, send, and read the status line and headers, whatever the receiver
does: a socket timeout is per read, and one byte a second never trips it, so
the socket is cut when the time is up. Only a 2xx is success; a redirect is a
failure naming its status, never followed. `user:password@` in a URL is sent
as HTTP Basic `Authorization`, not as part of the host. Proxies from the
environment are not used. A URL is logged, and shown in `last_error`, only as
`redact` gives it: no userinfo, no query, and no path past its first segment
(where Slack keeps its secret).

A failed delivery is tried again after 1, 4, 16 and 64 s (five tries in all);
failures are counted in the metrics and shown on the webhook's admin row.
"""

import base64
import heapq
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import F
from django.utils import timezone

from live import events, stats
from sessions_app.models import Session, Status, Task, Webhook

log = logging.getLogger(__name__)

ENDS = {Status.FAILED, Status.CANCELLED}
BACKOFF = [1, 4, 16, 64]
DEADLINE = 10  # seconds for one delivery: connect, send, status line and headers
LANES = 32  # webhook URLs delivered to at the same time, a thread each

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


def redact(url: str) -> str:
    """The URL as it may be shown: `https://***@hooks.example.com/services/…?…`,
    without userinfo, query, fragment, or the path past its first segment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    first, _, rest = parts.path.lstrip("/").partition("/")
    path = (f"/{first}" + ("/…" if rest else "")) if parts.path else ""
    userinfo = "***@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{userinfo}{host}{path}" + ("?…" if parts.query else "")


def scrub(text: str, url: str) -> str:
    """`text` (an error) without the parts of `url` that `redact` hides, in
    case a library quoted them."""
    parts = urlsplit(url)
    hidden = [parts.username, parts.password, parts.query, parts.fragment]
    hidden += parts.path.lstrip("/").split("/")[1:]
    hidden += [unquote(piece) for piece in hidden if piece]
    for piece in sorted({p for p in hidden if p and len(p) >= 3}, key=len, reverse=True):
        text = text.replace(piece, "…")
    return text


class Cutoff:
    """Shuts a socket down when `seconds` have passed, waking any read or write
    blocked on it, the TLS handshake's included: the socket's own timeout is
    per operation, and a receiver that trickles a byte a second never trips it."""

    def __init__(self, seconds: float) -> None:
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.done = False
        self.expired = False
        self.timer = threading.Timer(seconds, self.cut)
        self.timer.daemon = True

    def __enter__(self) -> "Cutoff":
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        with self.lock:
            self.done = True
            if self.sock is not None:
                self.sock.close()

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            if self.expired:  # the connect outlived the deadline
                raise TimeoutError
            # A duplicate: shutting it down shuts the connection down, whatever
            # became of the original (wrapping it for TLS detaches it).
            self.sock = sock.dup()

    def cut(self) -> None:
        with self.lock:
            if self.done:
                return
            self.expired = True
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Connection(http.client.HTTPConnection):
    """HTTP, or HTTPS when given a TLS context, with a cutoff on its socket."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, cutoff: Cutoff) -> None:
        super().__init__(host, port, timeout=DEADLINE)
        self.tls = tls
        self.cutoff = cutoff
        self.default_port = 443 if tls else 80  # no port in the Host header

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.cutoff.watch(sock)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def post(url: str, body: bytes) -> int:
    """POST `body` as JSON to `url` within `DEADLINE` seconds; the answer's
    status (the body is not read, a redirect not followed). Raises OSError,
    `http.client.HTTPException` or ValueError; TimeoutError at the deadline."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("no host in the URL")
    secure = parts.scheme == "https"
    headers = {"Content-Type": "application/json", "User-Agent": "switchboard-webhooks"}
    if parts.username is not None:
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cutoff = Cutoff(DEADLINE)
    tls = ssl.create_default_context() if secure else None
    connection = Connection(parts.hostname, parts.port or (443 if secure else 80), tls, cutoff)
    try:
        with cutoff:
            connection.request("POST", target, body=body, headers=headers)
            status = connection.getresponse().status
            if cutoff.expired:  # headers cut short read as complete ones
                raise TimeoutError
            return status
    except (OSError, http.client.HTTPException, ValueError):
        if cutoff.expired:
            raise TimeoutError(f"no answer in {DEADLINE} s")
        raise
    finally:
        connection.close()


@dataclass(order=True)
class Delivery:
    due: float
    attempt: int = field(compare=False)
    hook: int | None = field(compare=False)
    url: str = field(compare=False)
    body: bytes = field(compare=False)

    def __str__(self) -> str:
        where = redact(self.url)
        return f"{where} (Webhook #{self.hook})" if self.hook is not None else where


class Lane:
    """The deliveries to one URL, soonest due first; its thread makes them."""

    def __init__(self, lock: threading.Lock) -> None:
        self.queue: list[Delivery] = []
        self.wake = threading.Condition(lock)


class Sender:
    """POSTs alerts, with retries on a schedule: a thread per webhook URL while
    it has deliveries queued, so one receiver never delays another."""

    def __init__(self, limit: int = 1000, lanes: int = LANES) -> None:
        self.limit = limit  # deliveries queued in all, retries included
        self.max_lanes = lanes
        self.lock = threading.Lock()
        self.lanes: dict[str, Lane] = {}
        self.queued = 0

    def send(self, alert: dict) -> None:
        try:
            hooks = targets()
        except Exception:
            log.exception("could not read the webhooks")
            return
        if not hooks:
            return
        body = json.dumps(alert).encode()
        for hook, url in hooks:
            delivery = Delivery(time.monotonic(), 0, hook, url, body)
            with self.lock:
                lane = self.lanes.get(url)
                if self.queued >= self.limit:
                    refused = "webhook queue full"
                elif lane is None and len(self.lanes) >= self.max_lanes:
                    refused = f"{self.max_lanes} webhooks busy already"
                else:
                    refused = None
                    if lane is None:
                        lane = self.lanes[url] = Lane(self.lock)
                        threading.Thread(
                            target=self.run, args=(url, lane), name="webhooks", daemon=True
                        ).start()
                    self.put(lane, delivery)
            if refused:
                log.warning("%s: alert seq %s not sent to %s", refused, alert["seq"], delivery)
                stats.live.webhook_failed()

    def put(self, lane: Lane, delivery: Delivery) -> None:
        """Add a delivery to a lane (the lock held)."""
        heapq.heappush(lane.queue, delivery)
        self.queued += 1
        lane.wake.notify()

    def run(self, url: str, lane: Lane) -> None:
        """Deliver one URL's alerts as they fall due; end when none is left."""
        try:
            while True:
                with self.lock:
                    while not lane.queue or lane.queue[0].due > time.monotonic():
                        if not lane.queue:
                            del self.lanes[url]  # the next alert starts a new lane
                            return
                        lane.wake.wait(lane.queue[0].due - time.monotonic())
                    delivery = heapq.heappop(lane.queue)
                    self.queued -= 1
                if self.deliver(delivery):
                    with self.lock:
                        self.put(lane, delivery)
        except Exception:
            log.exception("webhook deliveries to %s stopped", redact(url))
            with self.lock:
                self.queued -= len(lane.queue)
                del self.lanes[url]
        finally:
            connections.close_all()

    def deliver(self, delivery: Delivery) -> bool:
        """One try; True when the delivery is to be tried again (`due` set)."""
        status = error = None
        try:
            status = post(delivery.url, delivery.body)
        except (OSError, http.client.HTTPException, ValueError) as failure:
            error = f"{type(failure).__name__}: {failure}" if str(failure) else repr(failure)
        else:
            if 300 <= status < 400:
                error = f"HTTP {status}: redirects are not followed"
            elif not 200 <= status < 300:
                error = f"HTTP {status}"
        retry = False
        if error is not None:
            error = scrub(error, delivery.url)[:500]
            stats.live.webhook_failed()
            retry = delivery.attempt < len(BACKOFF)
            log.warning(
                "webhook %s failed (%s)%s",
                delivery,
                error,
                f"; again in {BACKOFF[delivery.attempt]} s" if retry else "; giving up",
            )
            if retry:
                delivery.due = time.monotonic() + BACKOFF[delivery.attempt]
                delivery.attempt += 1
        self.note(delivery.hook, status, error)
        return retry

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

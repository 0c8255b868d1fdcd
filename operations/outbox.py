"""The webhook outbox: alerts leave through `Delivery` rows.

`enqueue` writes one row per webhook in the transaction of the failure that
raised the alert, so a restart between the failure and the POST loses
nothing, and a failure rolled back announces nothing. After commit it nudges
this process's `deliverer`; a server also looks every
`SWITCHBOARD_OUTBOX_POLL_SECONDS` (5 s), so rows left by a process that died,
or written by a command that exited, go out too.

A delivery is claimed before it is tried: in one transaction, the due row is
chosen (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so claimers pass each other) and
taken by an UPDATE that sets a claim token and moves `next_attempt_at` to the
end of a `LEASE`, and that only matches while the row is still pending and
due. Whatever the database's locking, two processes cannot both take it; a
process killed mid-try leaves the row due again when its lease ends.

The outcome is written only by the claim that holds the row: delivered, or
due again after 1, 4, 16 and 64 s (each up to a quarter longer, at random,
so receivers coming back are not hit by every server at once), or failed
after `MAX_ATTEMPTS` tries. A row is marked delivered right after its 2xx, so
delivery is at least once: a process that dies between the answer and the
mark (or outlives its lease) sends it again. The receiver can tell: every
POST carries `X-Switchboard-Delivery`, the row's id, the same on every try.

Each receiver has a thread of its own while it has deliveries due (at most
`LANES` at a time; the others wait their turn in the table), so a slow
receiver holds up only its own alerts.
"""

import hashlib
import http.client
import json
import logging
import random
import secrets
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction
from django.db.models import F, Min, Q, QuerySet
from django.utils import timezone

from live import stats
from operations import webhooks
from operations.models import Delivery
from sessions_app.models import Webhook

log = logging.getLogger(__name__)

BACKOFF = [1, 4, 16, 64]  # seconds before the 2nd, 3rd, ... try
JITTER = 0.25  # each wait is up to this much longer, at random
MAX_ATTEMPTS = len(BACKOFF) + 1
LEASE = 60  # seconds a claim holds a row: one try, well over webhooks.DEADLINE
LANES = 32  # receivers delivered to at the same time, a thread each

PENDING, DELIVERED, FAILED = Delivery.State.values

# A receiver: (Webhook id, "") or (None, the SHA-256 of a SWITCHBOARD_WEBHOOKS URL).
Key = tuple[int | None, str]


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def configured() -> dict[str, str]:
    """The URLs of SWITCHBOARD_WEBHOOKS in this process, by key."""
    return {url_key(url): url for url in settings.SWITCHBOARD["WEBHOOKS"]}


def targets() -> list[tuple[int | None, str]]:
    """(row id or None, url) of every webhook to call."""
    found = [(None, url) for url in settings.SWITCHBOARD["WEBHOOKS"]]
    found += list(Webhook.objects.filter(active=True).values_list("pk", "url"))
    return [(hook, url) for hook, url in found if url.startswith(("http://", "https://"))]


def enqueue(body: dict, hooks: list[tuple[int | None, str]]) -> list[Delivery]:
    """The rows for one alert (`body`, carrying its `event` and `seq`), written
    in the caller's transaction; this process delivers them after commit."""
    if not hooks:
        return []
    rows = [
        Delivery(
            webhook_id=hook,
            url_key="" if hook is not None else url_key(url),
            target=webhooks.redact(url)[:600],
            event=body["event"],
            seq=body["seq"],
            payload=body,
        )
        for hook, url in hooks
    ]
    with transaction.atomic():  # joins the failure's transaction
        Delivery.objects.bulk_create(rows)
        transaction.on_commit(deliverer.nudge)
    return rows


def backoff(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed try."""
    return BACKOFF[min(attempts, len(BACKOFF)) - 1] * (1 + random.random() * JITTER)


def receivable(keys: dict[str, str] | None = None) -> QuerySet:
    """Pending rows this process can deliver: rows of Webhooks, and of the
    SWITCHBOARD_WEBHOOKS URLs it has (another process's URL is left to it)."""
    keys = configured() if keys is None else keys
    mine = Q(webhook__isnull=False) | Q(url_key__in=list(keys))
    return Delivery.objects.filter(mine, status=PENDING)


def of(key: Key) -> Q:
    hook, url = key
    return Q(webhook_id=hook) if hook is not None else Q(webhook__isnull=True, url_key=url)


def claim(key: Key, limit: int = 1, now: datetime | None = None) -> list[Delivery]:
    """Take up to `limit` due deliveries to one receiver, oldest due first, for
    `LEASE` seconds; the rows taken, each carrying its claim token."""
    now = now or timezone.now()
    token = secrets.token_hex(16)
    due = Delivery.objects.filter(of(key), status=PENDING, next_attempt_at__lte=now)
    due = due.order_by("next_attempt_at", "id")
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        # Matches only rows still pending and due: another claimer that read
        # them too (no row locks on SQLite) takes none of them twice.
        Delivery.objects.filter(pk__in=ids, status=PENDING, next_attempt_at__lte=now).update(
            claim=token, next_attempt_at=now + timedelta(seconds=LEASE)
        )
    return list(Delivery.objects.filter(claim=token).order_by("next_attempt_at", "id"))


def settle(row: Delivery, error: str | None, final: bool = False) -> str | None:
    """Write the outcome of a try of a claimed row: delivered (`error` None),
    due again after a backoff, or failed (past `MAX_ATTEMPTS`, or `final`).
    The new status, or None when the claim was lost (its lease ran out and
    another process took the row) and nothing was written."""
    now = timezone.now()
    attempts = row.attempts + 1
    fields = {"attempts": attempts, "claim": ""}
    if error is None:
        fields.update(status=DELIVERED, delivered_at=now)
    elif final or attempts >= MAX_ATTEMPTS:
        fields.update(status=FAILED, last_error=error)
    else:
        fields.update(last_error=error, next_attempt_at=now + timedelta(seconds=backoff(attempts)))
    held = Delivery.objects.filter(pk=row.pk, claim=row.claim, status=PENDING)
    if not row.claim or not held.update(**fields):
        return None
    for name, value in fields.items():
        setattr(row, name, value)
    return row.status


def retry_now(rows: QuerySet) -> int:
    """Make pending and failed deliveries due at once (a failed one gets one
    more try); rows being tried now are left to their try."""
    now = timezone.now()
    free = Q(claim="") | Q(next_attempt_at__lte=now)
    with transaction.atomic():
        count = rows.filter(free, status__in=[PENDING, FAILED]).update(
            status=PENDING, next_attempt_at=now, claim=""
        )
        transaction.on_commit(deliverer.nudge)
    return count


def resolve(row: Delivery) -> tuple[str | None, str]:
    """The URL to POST `row` to now, or None and why there is none."""
    if row.webhook_id is None:
        url = configured().get(row.url_key)
        return (url, "") if url else (None, "the URL is no longer in SWITCHBOARD_WEBHOOKS")
    found = Webhook.objects.filter(pk=row.webhook_id).values_list("url", "active").first()
    if found is None:
        return None, "the webhook was deleted"
    if not found[1]:
        return None, "the webhook is turned off"
    return found[0], ""


def attempt(row: Delivery) -> str | None:
    """One try of a claimed row: POST it, write the outcome; the new status."""
    url, refusal = resolve(row)
    if url is None:
        stats.live.webhook_failed()
        log.warning("webhook delivery #%s to %s failed: %s", row.pk, row.target, refusal)
        return settle(row, refusal, final=True)
    status = error = None
    body = json.dumps(row.payload).encode()
    close_old_connections()  # none held through the POST (the pool is shared)
    try:
        status = webhooks.post(url, body, {"X-Switchboard-Delivery": str(row.pk)})
    except (OSError, http.client.HTTPException, ValueError) as failure:
        error = f"{type(failure).__name__}: {failure}" if str(failure) else repr(failure)
    else:
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}"
    where = f"{webhooks.redact(url)} (delivery #{row.pk})"
    if error is not None:
        error = webhooks.scrub(error, url)[:500]
        stats.live.webhook_failed()
    outcome = settle(row, error)
    if outcome is None:
        log.warning("webhook %s: the claim ran out during the try", where)
    elif error is not None:
        again = (row.next_attempt_at - timezone.now()).total_seconds()
        then = "; giving up" if outcome == FAILED else f"; again in {again:.1f} s"
        log.warning("webhook %s failed (%s)%s", where, error, then)
    note(row.webhook_id, status, error)
    return outcome


def note(hook: int | None, status: int | None, error: str | None) -> None:
    """Show the outcome on the webhook's admin row."""
    if hook is None:
        return
    try:
        now = timezone.now()
        row = Webhook.objects.filter(pk=hook)
        if error is None:
            row.update(last_status=status, last_sent_at=now)
        else:
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


class Deliverer:
    """Delivers the outbox from this process. Its thread wakes on a nudge
    (a commit that added rows), when the soonest retry falls due, and, in a
    server, every poll interval; it starts a thread per receiver with
    deliveries due. Outside a server it ends once nothing is pending."""

    def __init__(self, lanes: int = LANES) -> None:
        self.max_lanes = lanes
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.nudged = False
        self.serving = False
        self.thread: threading.Thread | None = None
        self.lanes: set[Key] = set()
        self.stopping = False

    def serve(self) -> None:
        """Deliver for as long as the process runs (started with the server)."""
        with self.lock:
            if self.serving:
                return
            self.serving = True
        self.nudge()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop delivering from this process, once the deliveries under way end
        (what is still pending waits in the outbox for the next server)."""
        with self.lock:
            self.serving = False
            self.stopping = True
            self.wake.notify()
            thread = self.thread
        if thread is not None:
            thread.join(timeout)
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.lanes and time.monotonic() < deadline:
                self.wake.wait(0.05)
            self.stopping = False

    def nudge(self) -> None:
        with self.lock:
            if self.stopping:
                return
            self.nudged = True
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="outbox", daemon=True)
                self.thread.start()
            self.wake.notify()

    def run(self) -> None:
        pause = 0.0
        while True:
            with self.lock:
                if not self.nudged and pause > 0 and not self.stopping:
                    self.wake.wait(pause)
                self.nudged = False
                if self.stopping:
                    self.thread = None
                    return
            try:
                due, soonest, pending = self.scan()
            except Exception:
                log.exception("could not read the outbox; trying again")
                due, soonest, pending = [], None, True
            finally:
                connections.close_all()
            poll = settings.SWITCHBOARD["OUTBOX_POLL_SECONDS"]
            with self.lock:
                for key in due:
                    if self.stopping:
                        break
                    if key not in self.lanes and len(self.lanes) < self.max_lanes:
                        self.lanes.add(key)
                        threading.Thread(
                            target=self.deliver, args=(key,), name="outbox-lane", daemon=True
                        ).start()
                if not (pending or self.serving or self.lanes or self.nudged):
                    self.thread = None
                    return
                pause = poll
                if soonest is not None:
                    pause = min(poll, max(0.05, (soonest - timezone.now()).total_seconds()))

    def scan(self) -> tuple[list[Key], datetime | None, bool]:
        """The receivers with deliveries due, when the next falls due, and
        whether any is pending at all."""
        now = timezone.now()
        pending = receivable()
        due = pending.filter(next_attempt_at__lte=now).order_by()
        keys = list(due.values_list("webhook_id", "url_key").distinct()[: self.max_lanes * 4])
        soonest = pending.filter(next_attempt_at__gt=now).aggregate(at=Min("next_attempt_at"))
        return keys, soonest["at"], bool(keys) or soonest["at"] is not None

    def deliver(self, key: Key) -> None:
        """Try one receiver's due deliveries, one at a time, until none is due."""
        try:
            while not self.stopping and (rows := claim(key)):
                attempt(rows[0])
        except Exception:
            log.exception("webhook deliveries stopped; the next look resumes them")
        finally:
            connections.close_all()
            with self.lock:
                self.lanes.discard(key)
                self.nudged = True  # look again: when the retries fall due
                self.wake.notify()


deliverer = Deliverer()


def start() -> None:
    """Deliver the outbox while this server runs (registered with publisher.on_serve)."""
    deliverer.serve()

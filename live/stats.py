"""Live figures for /api/v1/stats and the system channel.

Each server process counts its own connections, subscriptions and frames,
and writes them to a ServerProcess row every REPORT_SECONDS; an answer sums
the processes seen in the last STALE_SECONDS, so it covers them all.
"""

import asyncio
import atexit
import bisect
import logging
import os
import socket
import threading
import time
from collections import Counter
from datetime import timedelta

from channels.db import database_sync_to_async
from django.utils import timezone

from live.models import Event, ServerProcess

log = logging.getLogger("switchboard.stats")

REPORT_SECONDS = 5
STALE_SECONDS = 15
# Upper bounds (seconds) of the write latency histogram's buckets.
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ProcessStats:
    def __init__(self) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.started = time.time()
        self.connections = 0
        self.connections_total = 0
        self.messages_sent = 0
        # Sockets paused now because they stopped reading; pauses ever; frames
        # not sent to paused sockets (they are caught up from the database).
        self.paused = 0
        self.pauses = 0
        self.dropped = 0
        # Messages the process's hub took from the channel layer (one per
        # event and process, however many sockets watch), and layer failures.
        self.layer_messages = 0
        self.layer_errors = 0
        self.subscriptions: Counter[str] = Counter()
        # Counted in request threads too, hence the lock: events recorded by
        # kind, log lines stored, and how long writes took (a histogram).
        self.lock = threading.Lock()
        self.events: Counter[str] = Counter()
        self.log_lines = 0
        self.writes = [0] * (len(WRITE_BUCKETS) + 1)
        self.write_seconds = 0.0
        self.stale_tasks = 0
        self.webhook_failures = 0
        self.reporter: asyncio.Task | None = None

    def serve(self) -> None:
        """Report this process's figures while its loop runs (made on first use)."""
        reporter = self.reporter
        if reporter is not None and not reporter.done():
            return
        loop = asyncio.get_running_loop()
        if reporter is None:
            atexit.register(forget)
        self.reporter = loop.create_task(report_forever())

    def connected(self) -> None:
        self.connections += 1
        self.connections_total += 1
        self.serve()

    def webhook_failed(self) -> None:
        with self.lock:
            self.webhook_failures += 1

    def found_stale(self, count: int) -> None:
        with self.lock:
            self.stale_tasks += count

    def recorded(self, kinds: list[str]) -> None:
        with self.lock:
            self.events.update(kinds)

    def stored_lines(self, count: int) -> None:
        with self.lock:
            self.log_lines += count

    def wrote(self, seconds: float) -> None:
        with self.lock:
            self.writes[bisect.bisect_left(WRITE_BUCKETS, seconds)] += 1
            self.write_seconds += seconds

    def disconnected(self) -> None:
        self.connections -= 1

    def subscribed(self, channel: str) -> None:
        self.subscriptions[channel] += 1

    def unsubscribed(self, channel: str) -> None:
        self.subscriptions[channel] -= 1
        if self.subscriptions[channel] <= 0:
            del self.subscriptions[channel]

    def figures(self) -> dict:
        return {
            "connections": self.connections,
            "connections_total": self.connections_total,
            "messages_sent": self.messages_sent,
            "paused": self.paused,
            "pauses": self.pauses,
            "layer_messages": self.layer_messages,
            "layer_errors": self.layer_errors,
            "events": dict(self.events),
            "log_lines": self.log_lines,
            "writes": list(self.writes),
            "write_seconds": round(self.write_seconds, 6),
            "stale_tasks": self.stale_tasks,
            "webhook_failures": self.webhook_failures,
            "subscriptions": dict(self.subscriptions),
            "uptime_seconds": round(time.time() - self.started, 1),
        }


live = ProcessStats()


def report() -> None:
    """Write this process's figures; forget processes long gone."""
    now = timezone.now()
    ServerProcess.objects.update_or_create(
        name=live.name, defaults={"seen_at": now, "data": live.figures()}
    )
    ServerProcess.objects.filter(seen_at__lt=now - timedelta(hours=1)).delete()


def forget() -> None:
    """At a clean exit, leave the totals at once rather than after STALE_SECONDS."""
    try:
        ServerProcess.objects.filter(name=live.name).delete()
    except Exception:
        pass  # the database may be gone first; the row then ages out


async def report_forever() -> None:
    while True:
        try:
            await database_sync_to_async(report)()
        except Exception:
            # A database that is briefly away must not stop the reports for good.
            log.exception("could not report this process's figures")
        await asyncio.sleep(REPORT_SECONDS)


def live_processes() -> list[dict]:
    """The name and last figures of every server process seen lately."""
    since = timezone.now() - timedelta(seconds=STALE_SECONDS)
    rows = ServerProcess.objects.filter(seen_at__gte=since).order_by("name")
    return list(rows.values("name", "data"))


def snapshot(window_seconds: int = 10) -> dict:
    """Figures of every live server process, and the event rate from the database."""
    report()
    now = timezone.now()
    processes = live_processes()
    subscriptions: Counter[str] = Counter()
    for process in processes:
        subscriptions.update(process["data"].get("subscriptions", {}))
    total = {
        key: sum(p["data"].get(key, 0) for p in processes)
        for key in (
            "connections",
            "connections_total",
            "messages_sent",
            "paused",
            "layer_messages",
        )
    }
    return {
        **total,
        "channels": len(subscriptions),
        "subscriptions": dict(sorted(subscriptions.items())),
        **event_figures(window_seconds=window_seconds),
        "process": live.name,
        "processes": [{"name": p["name"], **p["data"]} for p in processes],
        "uptime_seconds": round(time.time() - live.started, 1),
        "ts": now.isoformat(),
    }


def event_figures(owner_id: int | None = None, window_seconds: int = 10) -> dict:
    """The event rate of the last `window_seconds` and the newest seq, of every
    session or of one owner's."""
    events = Event.objects.all() if owner_id is None else Event.objects.filter(owner_id=owner_id)
    since = timezone.now() - timedelta(seconds=window_seconds)
    recent = events.filter(ts__gte=since).count()
    newest = events.order_by("-id").values_list("id", flat=True).first() or 0
    return {"events_per_second": round(recent / window_seconds, 2), "last_seq": newest}

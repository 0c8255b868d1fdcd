"""Live figures for /api/v1/stats, the system channel and /metrics.

Each server process counts its own connections, subscriptions and frames in
prometheus_client metrics (live.metrics), and writes their values to a
ServerProcess row every REPORT_SECONDS; an answer sums the processes seen in
the last STALE_SECONDS, so it covers them all.
"""

import asyncio
import atexit
import logging
import os
import socket
import time
from collections import Counter
from datetime import timedelta

from channels.db import database_sync_to_async
from django.utils import timezone

from live import metrics
from live.eventstore import newest_seq
from live.models import Event, ServerProcess

log = logging.getLogger("switchboard.stats")

REPORT_SECONDS = 5
STALE_SECONDS = 15


class ProcessStats:
    """One process's counting: the metrics, and the subscriptions per channel
    that /api/v1/stats lists (too many series for Prometheus, hence by kind there)."""

    def __init__(self) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.started = time.time()
        self.metrics = metrics.ProcessMetrics()
        # Changed on the server's event loop only.
        self.subscriptions: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
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

    def value(self, sample: str, **labels: str) -> float:
        return self.metrics.value(sample, **labels)

    @property
    def connections(self) -> int:
        return int(self.metrics.value("switchboard_connections"))

    # --- on the event loop ------------------------------------------------------------

    def connected(self) -> None:
        self.metrics.connections.inc()
        self.metrics.connections_total.inc()
        self.serve()

    def disconnected(self) -> None:
        self.metrics.connections.dec()

    def paused_socket(self) -> None:
        self.metrics.paused.inc()
        self.metrics.pauses.inc()

    def resumed_socket(self) -> None:
        self.metrics.paused.dec()

    def sent(self) -> None:
        self.metrics.frames_sent.inc()

    def dropped(self) -> None:
        self.metrics.dropped.inc()

    def took_layer_message(self) -> None:
        self.metrics.layer_messages.inc()

    def layer_failed(self) -> None:
        self.metrics.layer_errors.inc()

    def subscribed(self, channel: str) -> None:
        self.subscriptions[channel] += 1
        kind = channel.split(":", 1)[0]
        self.kinds[kind] += 1
        self.metrics.subscriptions.labels(kind).inc()

    def unsubscribed(self, channel: str) -> None:
        self.subscriptions[channel] -= 1
        if self.subscriptions[channel] <= 0:
            del self.subscriptions[channel]
        kind = channel.split(":", 1)[0]
        self.kinds[kind] -= 1
        if self.kinds[kind] <= 0:
            # A kind nobody watches any more is not published (as before: no series at 0).
            del self.kinds[kind]
            self.metrics.subscriptions.remove(kind)
        else:
            self.metrics.subscriptions.labels(kind).dec()

    # --- in any thread ------------------------------------------------------------------

    def webhook_failed(self) -> None:
        self.metrics.webhook_failures.inc()

    def found_stale(self, count: int) -> None:
        self.metrics.stale_tasks.inc(count)

    def recorded(self, kinds: list[str]) -> None:
        for kind, count in Counter(kinds).items():  # a batch is thousands of one kind
            self.metrics.events.labels(kind).inc(count)

    def stored_lines(self, count: int) -> None:
        self.metrics.log_lines.inc(count)

    def wrote(self, seconds: float) -> None:
        self.metrics.writes.observe(seconds)

    def figures(self) -> dict:
        """The process's row: its metrics dumped, and the figures the stats API
        lists per process, read from those same samples."""
        families = list(self.metrics.collect())
        values = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
        }

        def count(sample: str) -> int:
            return int(values.get((sample, ()), 0))

        buckets = [  # cumulative, in the order of the bounds
            s.value
            for f in families
            for s in f.samples
            if s.name == "switchboard_write_seconds_bucket"
        ]
        events = {
            dict(labels)["kind"]: int(value)
            for (name, labels), value in values.items()
            if name == "switchboard_events_recorded_total"
        }
        return {
            "connections": count("switchboard_connections"),
            "connections_total": count("switchboard_connections_total"),
            "messages_sent": count("switchboard_frames_sent_total"),
            "paused": count("switchboard_paused_sockets"),
            "pauses": count("switchboard_socket_pauses_total"),
            "layer_messages": count("switchboard_layer_messages_total"),
            "layer_errors": count("switchboard_layer_errors_total"),
            "events": events,
            "log_lines": count("switchboard_log_lines_total"),
            "writes": [int(b - a) for a, b in zip([0, *buckets], buckets, strict=False)],
            "write_seconds": round(values.get(("switchboard_write_seconds_sum", ()), 0.0), 6),
            "stale_tasks": count("switchboard_stale_tasks_total"),
            "webhook_failures": count("switchboard_webhook_failures_total"),
            "subscriptions": dict(self.subscriptions),
            "uptime_seconds": round(time.time() - self.started, 1),
            METRICS: metrics.dump(families),
        }


# The key of a ServerProcess row's data that holds the dumped metrics (for
# /metrics; the stats API leaves it out).
METRICS = "metrics"

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


def dumps(processes: list[dict]) -> list[tuple[str, list]]:
    """Each live process's name and dumped metrics, for metrics.Relay."""
    return [(p["name"], p["data"].get(METRICS, [])) for p in processes]


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
        "processes": [
            {"name": p["name"], **{k: v for k, v in p["data"].items() if k != METRICS}}
            for p in processes
        ],
        "uptime_seconds": round(time.time() - live.started, 1),
        "ts": now.isoformat(),
    }


def event_figures(owner_id: int | None = None, window_seconds: int = 10) -> dict:
    """The event rate of the last `window_seconds` and the newest seq, of every
    session or of one owner's."""
    events = Event.objects.all() if owner_id is None else Event.objects.filter(owner_id=owner_id)
    since = timezone.now() - timedelta(seconds=window_seconds)
    recent = events.filter(ts__gte=since).count()
    return {
        "events_per_second": round(recent / window_seconds, 2),
        "last_seq": newest_seq(owner_id),
    }

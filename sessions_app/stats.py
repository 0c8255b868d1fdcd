"""Live figures of this server process, for /api/v1/stats and the system channel."""

import os
import socket
import time
from collections import Counter
from datetime import timedelta

from django.utils import timezone

from sessions_app.models import Event


class ProcessStats:
    def __init__(self) -> None:
        self.started = time.time()
        self.connections = 0
        self.connections_total = 0
        self.messages_sent = 0
        self.subscriptions: Counter[str] = Counter()

    def connected(self) -> None:
        self.connections += 1
        self.connections_total += 1

    def disconnected(self) -> None:
        self.connections -= 1

    def subscribed(self, channel: str) -> None:
        self.subscriptions[channel] += 1

    def unsubscribed(self, channel: str) -> None:
        self.subscriptions[channel] -= 1
        if self.subscriptions[channel] <= 0:
            del self.subscriptions[channel]


live = ProcessStats()


def snapshot(window_seconds: int = 10) -> dict:
    """This process's connections and subscriptions, and the event rate from the database."""
    since = timezone.now() - timedelta(seconds=window_seconds)
    recent = Event.objects.filter(ts__gte=since).count()
    newest = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return {
        "connections": live.connections,
        "connections_total": live.connections_total,
        "channels": len(live.subscriptions),
        "subscriptions": dict(sorted(live.subscriptions.items())),
        "messages_sent": live.messages_sent,
        "events_per_second": round(recent / window_seconds, 2),
        "last_seq": newest,
        "process": f"{socket.gethostname()}:{os.getpid()}",
        "uptime_seconds": round(time.time() - live.started, 1),
        "ts": timezone.now().isoformat(),
    }

"""The logs:<session_id> channel, plugged into the core's streams at start-up.

What it adds to a plain channel: a per-subscriber filter (level, task, q)
applied on the server, a snapshot of the newest lines, the lines of stored
log.append events read back from LogEntry, and a live line budget per
subscriber: past it, batches are held back and one `log.skipped` notice says
how many lines, how many errors and which ids, so a page can fetch exactly
those lines. Resume and gap filling are never cut.
"""

import json
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from live import events, streams
from live.errors import Refused
from live.guards import TokenBucket
from live.models import Event
from logs_app import services
from logs_app.models import LogEntry
from sessions_app.streams import OwnedStream, visible_session, visible_session_ids


@dataclass
class Skipped:
    """Live log lines not sent to one subscriber, as one notice."""

    seq: int = 0
    count: int = 0
    errors: int = 0
    first_id: int = 0
    last_id: int = 0

    def add(self, seq: int, entries: list[dict]) -> None:
        self.seq = seq
        self.count += len(entries)
        self.errors += sum(1 for e in entries if e["levelno"] >= 40)
        ids = [int(e["id"]) for e in entries]
        self.first_id = min(ids + ([self.first_id] if self.first_id else []))
        self.last_id = max(ids + [self.last_id])


# Parsed log.append frames, shared by the filtered subscribers of one process.
_parsed: OrderedDict[tuple[str, int], dict] = OrderedDict()


def parsed_frame(message: dict) -> dict:
    key = (message["channel"], message["seq"])
    frame = _parsed.get(key)
    if frame is None:
        frame = _parsed[key] = json.loads(message["frame"])
        if len(_parsed) > 256:
            _parsed.popitem(last=False)
    return frame


def filter_entries(frame: dict, log_filter: services.LogFilter) -> dict | None:
    """A log.append frame with only the entries that pass the filter (None if none do)."""
    if frame["event"] != "log.append" or log_filter.is_empty:
        return frame
    entries = [e for e in frame["data"]["entries"] if log_filter.matches(e)]
    if not entries:
        return None
    if len(entries) == len(frame["data"]["entries"]):
        return frame  # every line passes: the frame as it is (its text too)
    return dict(frame, data={"entries": entries})


class LogRelay(streams.Relay):
    """Live batches for one subscriber: filtered, within its line budget."""

    def __init__(self, log_filter: services.LogFilter) -> None:
        conf = settings.SWITCHBOARD
        self.filter = log_filter
        self.budget = TokenBucket(conf["LOG_LINES_PER_SECOND"], conf["LOG_LINES_BURST"])
        self.skipped: Skipped | None = None
        self.channel = ""

    def live(self, message: dict) -> tuple[list[str], float | None]:
        self.channel = message["channel"]
        frame = None
        count = message.get("count", 0)
        if not self.filter.is_empty:
            parsed = parsed_frame(message)
            frame = filter_entries(parsed, self.filter)
            if frame is None:
                return [], None
            count = len(frame["data"]["entries"])
            if frame is parsed:
                frame = None  # nothing dropped: send the published text
        if not self.budget.take(count):
            # A flood: hold the batch back, and say so within a second.
            self.skipped = self.skipped or Skipped()
            self.skipped.add(message["seq"], (frame or parsed_frame(message))["data"]["entries"])
            return [], 1.0
        return [*self.flush(), events.dumps(frame) if frame else message["frame"]], None

    def flush(self) -> list[str]:
        skipped, self.skipped = self.skipped, None
        if skipped is None:
            return []
        data = {
            "count": skipped.count,
            "errors": skipped.errors,
            "first_id": str(skipped.first_id),
            "last_id": str(skipped.last_id),
        }
        now = timezone.now().isoformat()
        return [
            events.dumps(events.event_frame(self.channel, "log.skipped", skipped.seq, now, data))
        ]


class LogStream(OwnedStream):
    kind, pattern, has_id = "logs", "logs:<session_id>", True
    # A log.append event carries up to LOG_FRAME_ENTRIES lines: page those finer.
    backlog_page = 10
    filters = True

    def check_access(self, user, ref):
        return visible_session(user, ref)

    def visible_ids(self, user, ids: set[int]) -> set[int]:
        return visible_session_ids(user, ids)

    def parse_filter(self, raw) -> services.LogFilter:
        try:
            return services.parse_filter(raw)
        except Refused as error:
            raise Refused(error.message, field="filter") from None

    def describe_filter(self, narrowing: services.LogFilter) -> dict:
        return narrowing.as_json()

    def snapshot(self, user, ref, obj, narrowing: services.LogFilter) -> dict:
        page = services.query(ref.id, narrowing, limit=settings.SWITCHBOARD["LOG_SNAPSHOT_LINES"])
        return {"entries": page.entries, "has_more": page.has_more}

    def narrow(self, frame: dict, narrowing: services.LogFilter) -> dict | None:
        return filter_entries(frame, narrowing)

    def relay(self, narrowing: services.LogFilter) -> LogRelay:
        return LogRelay(narrowing)


def load_lines(log_events: list[Event]) -> dict[int, dict]:
    """The lines of stored log.append events (the event row keeps only a count)."""
    lines: dict[int, list[dict]] = {event.id: [] for event in log_events}
    rows = LogEntry.objects.filter(
        session_id__in={e.session_id for e in log_events},  # uses (session, seq)
        seq__in=[e.id for e in log_events],
    )
    for entry in rows.order_by("id"):
        lines[entry.seq].append(entry.as_json())
    return {seq: {"entries": entries} for seq, entries in lines.items()}


def register() -> None:
    streams.register(LogStream())
    events.register_loader(
        "log.append", load_lines, primary=lambda e: services.channel(e.session_id)
    )

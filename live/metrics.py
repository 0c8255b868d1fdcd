"""The Prometheus metrics one process counts, and how they travel to /metrics.

Each process counts in prometheus_client metrics of its own, in private
registries (never the library's global one, so tests and other apps in the
process do not clash). `dump()` is a scrape of them, written with the
process's ServerProcess row (live.stats); `Relay` turns the dumps of every
live process back into metric families, each sample with a `process` label,
so the /metrics of any process shows every process. The relay knows no
metric by name: what a process's registries hold is what /metrics serves.
"""

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import disable_created_metrics
from prometheus_client.metrics_core import Metric

# The published series never had `_created` samples; the relay carries only
# what a process counts. (The switch is the library's and process-wide.)
disable_created_metrics()

# Upper bounds (seconds) of the write latency histogram's buckets.
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ProcessMetrics:
    """The metrics of one process. Thread-safe: the library locks each value."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # The gauge switchboard_connections and the counter whose sample is
        # switchboard_connections_total share a family name, which one registry
        # refuses; the counter has a registry of its own, merged when dumped.
        self.totals = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "switchboard_connections", "Open WebSocket connections.", registry=r
        )
        self.connections_total = Counter(
            "switchboard_connections", "WebSocket connections accepted.", registry=self.totals
        )
        self.paused = Gauge(
            "switchboard_paused_sockets", "Sockets paused for not reading.", registry=r
        )
        self.frames_sent = Counter(
            "switchboard_frames_sent", "Frames sent to WebSocket clients.", registry=r
        )
        self.layer_messages = Counter(
            "switchboard_layer_messages", "Messages taken from the channel layer.", registry=r
        )
        self.log_lines = Counter("switchboard_log_lines", "Log lines stored.", registry=r)
        self.stale_tasks = Counter(
            "switchboard_stale_tasks", "Running tasks failed for want of reports.", registry=r
        )
        self.webhook_failures = Counter(
            "switchboard_webhook_failures", "Webhook deliveries that failed.", registry=r
        )
        self.subscriptions = Gauge(
            "switchboard_subscriptions",
            "Subscriptions by kind of channel.",
            ["kind"],
            registry=r,
        )
        self.events = Counter(
            "switchboard_events_recorded", "Events recorded, by kind.", ["kind"], registry=r
        )
        self.writes = Histogram(
            "switchboard_write_seconds",
            "Time a write took, change and events.",
            buckets=WRITE_BUCKETS,
            registry=r,
        )
        self.pauses = Counter(
            "switchboard_socket_pauses", "Times a socket was paused for not reading.", registry=r
        )
        self.dropped = Counter(
            "switchboard_frames_dropped",
            "Frames not sent to paused sockets (they catch up from the database).",
            registry=r,
        )
        self.layer_errors = Counter(
            "switchboard_layer_errors", "Failures of the channel layer.", registry=r
        )

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        yield from self.totals.collect()

    def value(self, sample: str, **labels: str) -> float:
        """One sample's value now (0 when it has none yet)."""
        for registry in (self.registry, self.totals):
            found = registry.get_sample_value(sample, labels)
            if found is not None:
                return found
        return 0.0


def dump(families: Iterable[Metric]) -> list:
    """Metric families as JSON: [name, type, help, [[sample, labels, value], ...]]."""
    return [
        [f.name, f.type, f.documentation, [[s.name, s.labels, s.value] for s in f.samples]]
        for f in families
    ]


class Relay:
    """A collector of the dumps of several processes: one family per name and
    type, every sample labelled with the process that counted it."""

    def __init__(self, processes: list[tuple[str, list]]) -> None:
        self.processes = processes

    def collect(self) -> Iterator[Metric]:
        families: dict[tuple[str, str], Metric] = {}
        for process, dumped in self.processes:
            for name, kind, documentation, samples in dumped:
                family = families.get((name, kind))
                if family is None:
                    family = families[(name, kind)] = Metric(name, documentation, kind)
                for sample, labels, value in samples:
                    family.add_sample(sample, {"process": process, **labels}, value)
        yield from families.values()

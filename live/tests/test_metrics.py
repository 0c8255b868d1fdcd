"""The process's prometheus_client metrics, their dump and the relay of dumps."""

import json

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from live import metrics
from live.stats import METRICS, ProcessStats


def served(*processes: tuple[str, ProcessStats]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    # Through JSON, as the rows carry them.
    dumps = [(name, json.loads(json.dumps(p.figures()[METRICS]))) for name, p in processes]
    registry.register(metrics.Relay(dumps))
    return generate_latest(registry).decode()


def test_each_process_counts_in_registries_of_its_own():
    one, two = ProcessStats(), ProcessStats()
    one.stored_lines(3)
    two.stored_lines(1)
    assert one.value("switchboard_log_lines_total") == 3
    assert two.value("switchboard_log_lines_total") == 1
    assert REGISTRY.get_sample_value("switchboard_log_lines_total") is None


def test_the_relay_labels_every_sample_with_its_process_in_one_family_per_name():
    one, two = ProcessStats(), ProcessStats()
    one.metrics.connections.inc(2)
    one.metrics.connections_total.inc(5)
    two.recorded(["task.update", "task.update"])
    body = served(("a:1", one), ("b:2", two))
    assert body.count("# TYPE switchboard_connections gauge") == 1
    assert body.count("# TYPE switchboard_connections_total counter") == 1
    assert 'switchboard_connections{process="a:1"} 2.0' in body
    assert 'switchboard_connections{process="b:2"} 0.0' in body
    assert 'switchboard_connections_total{process="a:1"} 5.0' in body
    assert 'switchboard_events_recorded_total{kind="task.update",process="b:2"} 2.0' in body
    assert "_created" not in body
    types = [line for line in body.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)) == len(list(text_string_to_metric_families(body)))


def test_a_kind_of_channel_nobody_watches_is_not_published():
    stats = ProcessStats()
    stats.subscribed("session:1")
    stats.subscribed("session:2")
    stats.unsubscribed("session:1")
    assert stats.value("switchboard_subscriptions", kind="session") == 1
    stats.unsubscribed("session:2")
    assert "switchboard_subscriptions{" not in served(("a:1", stats))
    assert stats.figures()["subscriptions"] == {}


def test_the_figures_of_the_stats_api_are_read_from_the_metrics():
    stats = ProcessStats()
    stats.metrics.connections.inc()
    stats.paused_socket()
    stats.sent()
    stats.wrote(0.003)
    stats.wrote(0.003)
    stats.wrote(9.0)
    figures = stats.figures()
    assert figures["connections"] == 1 and figures["paused"] == 1 and figures["pauses"] == 1
    assert figures["messages_sent"] == 1
    assert figures["writes"] == [0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert figures["write_seconds"] == 9.006
    stats.resumed_socket()
    assert stats.figures()["paused"] == 0 and stats.figures()["pauses"] == 1

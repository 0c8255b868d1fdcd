"""/healthz, /readyz and /metrics against real daphne processes."""

import asyncio
import json
import os
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from live.tests import wsclient as wc

pytestmark = pytest.mark.timeout(120)


def get(url: str, token: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_healthz_and_readyz_answer_without_identity(live):
    status, kind, body = get(f"{live.url}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert kind.startswith("application/json")
    status, _, body = get(f"{live.url}/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def test_health_checks_answer_head_as_get_without_a_body(live):
    for path in ("healthz", "readyz"):
        request = urllib.request.Request(f"{live.url}/{path}", method="HEAD")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, path
            assert response.read() == b""


def test_readyz_is_503_naming_a_database_that_does_not_answer(fresh_server):
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        url = f"postgres://postgres@127.0.0.1:{free_port()}/nowhere"
    else:
        url = "sqlite:////nonexistent-folder/switchboard.sqlite3"
    server = fresh_server(DATABASE_URL=url)
    status, _, body = get(f"{server.url}/readyz")
    assert status == 503
    answer = json.loads(body)
    assert answer["status"] == "unavailable"
    assert any(reason.startswith("database:") for reason in answer["reasons"]), answer
    assert get(f"{server.url}/healthz")[0] == 200  # the process itself still serves


def test_readyz_is_503_naming_a_channel_layer_that_does_not_answer(fresh_server):
    server = fresh_server(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    status, _, body = get(f"{server.url}/readyz")
    assert status == 503
    assert any(r.startswith("channel layer:") for r in json.loads(body)["reasons"]), body


async def test_metrics_cover_the_server_for_a_staff_token(live, admin_token, worker_token):
    assert (await asyncio.to_thread(get, f"{live.url}/metrics"))[0] == 401
    assert (await asyncio.to_thread(get, f"{live.url}/metrics", "sb_wrong"))[0] == 401
    assert (await asyncio.to_thread(get, f"{live.url}/metrics", worker_token))[0] == 403

    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "measured")
    await asyncio.to_thread(api.log, session["id"], [{"message": "one"}, {"message": "two"}])
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"session:{session['id']}")

        async def scraped():
            status, kind, body = await asyncio.to_thread(get, f"{live.url}/metrics", admin_token)
            assert status == 200 and kind.startswith("text/plain"), body
            families = {f.name: f for f in text_string_to_metric_families(body)}
            connections = sum(s.value for s in families["switchboard_connections"].samples)
            return families if connections >= 1 else None

        families = None
        for _ in range(50):  # processes report every 5 s
            families = await scraped()
            if families:
                break
            await asyncio.sleep(0.25)
        assert families, "the open socket never showed in the metrics"
    assert all(name.startswith("switchboard_") for name in families)
    events: dict[str, float] = {}  # summed over the processes reporting
    for sample in families["switchboard_events_recorded"].samples:
        if sample.name.endswith("_total"):
            events[sample.labels["kind"]] = events.get(sample.labels["kind"], 0) + sample.value
    assert events.get("session.update", 0) >= 1 and events.get("log.append", 0) >= 1
    lines = [
        s.value for s in families["switchboard_log_lines"].samples if s.name.endswith("_total")
    ]
    assert sum(lines) >= 2
    counts = [s for s in families["switchboard_write_seconds"].samples if s.name.endswith("_count")]
    assert counts and sum(s.value for s in counts) >= 2
    subscriptions = families["switchboard_subscriptions"].samples
    assert any(s.labels["kind"] == "session" and s.value >= 1 for s in subscriptions)


def test_metrics_may_be_public(fresh_server):
    server = fresh_server(SWITCHBOARD_METRICS_PUBLIC="1")
    status, _, body = get(f"{server.url}/metrics")
    assert status == 200 and "switchboard_server_processes" in body


async def test_the_grafana_dashboard_asks_only_for_series_the_metrics_serve(live, admin_token):
    import re
    import time
    from pathlib import Path

    from conftest import ROOT

    dashboard = json.loads(Path(ROOT, "deploy/grafana/switchboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    wanted = {name for e in exprs for name in re.findall(r"switchboard_[a-z_]+", e)}
    assert len(wanted) >= 10, wanted
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "for the dashboard")
    await asyncio.to_thread(api.create_task, session["id"], "a task")
    await asyncio.to_thread(api.log, session["id"], [{"message": "one line"}])
    missing = wanted
    deadline = time.monotonic() + 20
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"session:{session['id']}")
        while missing and time.monotonic() < deadline:
            _, _, body = await asyncio.to_thread(get, f"{live.url}/metrics", admin_token)
            served = {s.name for f in text_string_to_metric_families(body) for s in f.samples}
            missing = wanted - served
            await asyncio.sleep(0.5)
    assert not missing, f"the dashboard asks for series /metrics does not serve: {missing}"


# The series /metrics has published since it first did: names, types and label
# names, which dashboards and alert rules are written against.
PUBLISHED = {
    "switchboard_connections": ("gauge", {("process",)}),
    "switchboard_connections_total": ("counter", {("process",)}),
    "switchboard_paused_sockets": ("gauge", {("process",)}),
    "switchboard_frames_sent_total": ("counter", {("process",)}),
    "switchboard_layer_messages_total": ("counter", {("process",)}),
    "switchboard_log_lines_total": ("counter", {("process",)}),
    "switchboard_stale_tasks_total": ("counter", {("process",)}),
    "switchboard_webhook_failures_total": ("counter", {("process",)}),
    "switchboard_subscriptions": ("gauge", {("kind", "process")}),
    "switchboard_events_recorded_total": ("counter", {("kind", "process")}),
    "switchboard_write_seconds_bucket": ("histogram", {("le", "process")}),
    "switchboard_write_seconds_count": ("histogram", {("process",)}),
    "switchboard_write_seconds_sum": ("histogram", {("process",)}),
    "switchboard_server_processes": ("gauge", {()}),
    "switchboard_tasks": ("gauge", {("status",)}),
    "switchboard_sessions": ("gauge", {("status",)}),
}


def process_of(server) -> str:
    import socket

    return f"{socket.gethostname()}:{server.process.pid}"


def samples(body: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def value(found: dict[str, list], name: str, **labels: str) -> float:
    return sum(
        s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_metrics_keep_their_names_types_and_labels(live, admin_token):
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "named")
    await asyncio.to_thread(api.create_task, session["id"], "a task")
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"session:{session['id']}")
        status, _, body = await asyncio.to_thread(get, f"{live.url}/metrics", admin_token)
    assert status == 200, body
    types = dict(line.split()[2:4] for line in body.splitlines() if line.startswith("# TYPE "))
    found = samples(body)
    for name, (kind, label_sets) in PUBLISHED.items():
        family = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        assert types.get(family if kind == "histogram" else name) == kind, (name, types)
        assert name in found, f"{name} is not served"
        assert {tuple(sorted(s.labels)) for s in found[name]} == label_sets, name
    assert not [n for n in found if n.endswith("_created")], "no _created series"
    mine = process_of(live)
    assert value(found, "switchboard_connections", process=mine) >= 1
    assert value(found, "switchboard_subscriptions", process=mine, kind="session") >= 1
    buckets = [s.labels["le"] for s in found["switchboard_write_seconds_bucket"]
               if s.labels["process"] == mine]  # fmt: skip
    assert buckets[-1] == "+Inf" and buckets[:3] == ["0.001", "0.0025", "0.005"]


async def test_a_counter_of_the_process_moves_with_what_it_does(live, admin_token):
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "counted")
    mine = process_of(live)

    async def scrape() -> dict[str, list]:
        status, _, body = await asyncio.to_thread(get, f"{live.url}/metrics", admin_token)
        assert status == 200, body
        return samples(body)

    before = await scrape()
    lines = [{"message": f"line {n}"} for n in range(3)]
    await asyncio.to_thread(api.log, session["id"], lines)
    after = await scrape()  # the answering process reports its own figures as it scrapes
    moved = value(after, "switchboard_log_lines_total", process=mine) - value(
        before, "switchboard_log_lines_total", process=mine
    )
    assert moved == 3
    appended = {"process": mine, "kind": "log.append"}
    assert value(after, "switchboard_events_recorded_total", **appended) == (
        value(before, "switchboard_events_recorded_total", **appended) + 1
    )
    assert value(after, "switchboard_write_seconds_count", process=mine) > value(
        before, "switchboard_write_seconds_count", process=mine
    )


async def test_the_metrics_of_one_process_show_every_process(live, fresh_server, admin_token):
    other = fresh_server()
    names = {process_of(live), process_of(other)}
    async with (
        await wc.connect(live.ws_url, admin_token) as one,
        await wc.connect(other.ws_url, admin_token) as two,
    ):
        await wc.subscribe(one, "sessions")
        await wc.subscribe(two, "tasks")
        found: dict[str, list] = {}
        for _ in range(60):  # each process reports every 5 s
            _, _, body = await asyncio.to_thread(get, f"{live.url}/metrics", admin_token)
            found = samples(body)
            open_now = {
                s.labels["process"] for s in found["switchboard_connections"] if s.value >= 1
            }
            if names <= open_now:
                break
            await asyncio.sleep(0.25)
        assert names <= open_now, found.get("switchboard_connections")
    assert value(found, "switchboard_subscriptions", process=process_of(other), kind="tasks") == 1
    assert value(found, "switchboard_subscriptions", process=process_of(live), kind="tasks") == 0
    for name in names:
        assert value(found, "switchboard_frames_sent_total", process=name) >= 1
        assert value(found, "switchboard_connections_total", process=name) >= 1
    assert value(found, "switchboard_server_processes") >= 2

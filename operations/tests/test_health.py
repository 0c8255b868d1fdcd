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

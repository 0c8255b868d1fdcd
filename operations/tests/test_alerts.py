"""Failures announced: system.alert events on the staff channel and webhooks
POSTed after commit, retried, never holding up a write."""

import asyncio
import base64
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port
from live import stats
from live.models import Event
from live.tests import wsclient as wc
from operations import webhooks
from sessions_app import services
from sessions_app.models import Webhook

pytestmark = pytest.mark.timeout(120)


class Receiver:
    """A webhook receiver on 127.0.0.1: answers `statuses` in turn (then 200),
    holding each answer until `release` is set. Every request, whatever its
    method, is kept in `requests` as (method, path, headers)."""

    def __init__(
        self, statuses=(), hold: bool = False, location: str = "", port: int | None = None
    ) -> None:
        self.bodies: list[dict] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.statuses = list(statuses)
        self.release = threading.Event()
        self.arrived = threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.requests.append((self.command, self.path, dict(self.headers)))
                if self.command == "POST":
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    receiver.bodies.append(body)
                receiver.arrived.set()
                receiver.release.wait(30)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class Trickler:
    """A receiver on 127.0.0.1 that reads the request, sends a status line, then
    one header byte a second for ever (until closed): no read ever times out."""

    def __init__(self) -> None:
        self.calls = 0
        self.stop = threading.Event()
        trickler = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                trickler.calls += 1
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    while not trickler.stop.wait(1):
                        self.wfile.write(b"X")
                except OSError:
                    pass  # the sender hung up

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.django_db(transaction=True)
def test_an_ended_session_is_one_alert_and_a_failed_task_one_more():
    session, _ = services.create_session(name="nightly")
    first, _ = services.create_task(session.pk, name="extract", status="running")
    services.create_task(session.pk, name="load")
    services.update_task(first.pk, status="failed", error="boom\nTraceback ...")
    services.cancel_session(session.pk)
    alerts = list(Event.objects.filter(kind="system.alert").order_by("id"))
    assert [a.data["event"] for a in alerts] == ["task.failed", "session.cancelled"]
    assert alerts[0].data["text"] == f"Task “extract” (#{first.pk}) of “nightly” failed: boom"
    assert alerts[0].data["level"] == "error" and alerts[0].data["task"]["error"].startswith("boom")
    assert alerts[1].data["text"].startswith("Session “nightly”")
    assert alerts[1].data["task"] is None
    # Each alert follows the change it announces, in the same transaction.
    update = Event.objects.filter(kind="task.update", task_id=first.pk).latest("id")
    assert update.pk < alerts[0].pk


async def test_alerts_reach_staff_live_and_webhooks_after_commit(fresh_server, admin_token):
    receiver = Receiver(hold=True)
    try:
        srv = fresh_server(SWITCHBOARD_WEBHOOKS=receiver.url)
        api = srv.client(admin_token)
        session = await asyncio.to_thread(api.create_session, "alerting")
        task = await asyncio.to_thread(
            api.request, "POST", f"sessions/{session['id']}/tasks", {"name": "step"}
        )
        async with await wc.connect(srv.ws_url, admin_token) as ws:
            reply = await wc.subscribe(ws, "system")
            assert "stats" in reply["snapshot"]
            # The write answers while the receiver still holds the webhook.
            await asyncio.to_thread(api.update_task, task["id"], status="cancelled")
            frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "system.alert")
            assert frame["data"]["event"] == "task.cancelled"
            assert frame["data"]["task"]["id"] == task["id"]
            assert await asyncio.to_thread(receiver.arrived.wait, 10)
            assert not receiver.release.is_set()
            # Resume from before the alert: it comes again, from the database.
            since = reply["seq"]
        async with await wc.connect(srv.ws_url, admin_token) as ws:
            resumed = await wc.subscribe(ws, "system", since=since)
            assert resumed["seq"] == since
            again, _ = await wc.recv_until(ws, lambda f: f.get("event") == "system.alert")
            assert again["seq"] == frame["seq"]
        receiver.release.set()
        body = receiver.bodies[0]
        assert body["event"] == "task.cancelled" and body["seq"] == frame["seq"]
        assert body["text"] == f"Task “step” (#{task['id']}) of “alerting” was cancelled"
        assert body["session"]["id"] == session["id"] and body["task"]["name"] == "step"
    finally:
        receiver.close()


@pytest.mark.django_db(transaction=True)
def test_a_failing_receiver_gets_retries_and_its_failures_show_in_the_admin(admin_user):
    flaky = Receiver(statuses=[500, 503])
    down = Webhook.objects.create(url=f"http://127.0.0.1:{free_port()}/nobody", name="down")
    Webhook.objects.create(url=flaky.url, name="flaky")
    Webhook.objects.create(url="file:///etc/passwd", name="not http")
    try:
        session, _ = services.create_session(name="retried")
        task, _ = services.create_task(session.pk, name="t", status="running")
        started = time.monotonic()
        services.update_task(task.pk, status="failed", error="exit status 3")
        assert time.monotonic() - started < 1  # delivery is not the write's business
        assert wait_for(lambda: len(flaky.bodies) == 3, 20), flaky.bodies
        assert flaky.bodies[0] == flaky.bodies[2] and flaky.bodies[0]["event"] == "task.failed"
        assert wait_for(lambda: Webhook.objects.get(pk=down.pk).failures >= 2, 20)
        row = Webhook.objects.get(pk=down.pk)
        assert row.last_error and row.last_failed_at and row.last_sent_at is None
        # The receiver has the third body before the sender has stored its answer.
        assert wait_for(lambda: Webhook.objects.get(name="flaky").last_status == 200, 10)
        assert Webhook.objects.get(name="flaky").failures == 2
    finally:
        flaky.close()


@pytest.mark.django_db(transaction=True)
def test_a_trickling_receiver_is_cut_at_the_deadline_and_holds_up_no_other_hook(monkeypatch):
    monkeypatch.setattr(webhooks, "DEADLINE", 3)
    trickler, healthy = Trickler(), Receiver()
    slow = Webhook.objects.create(url=trickler.url, name="trickles")
    Webhook.objects.create(url=healthy.url, name="healthy")
    failures = stats.live.value("switchboard_webhook_failures_total")
    try:
        session, _ = services.create_session(name="two alerts")
        for name in ("a", "b"):
            task, _ = services.create_task(session.pk, name=name, status="running")
            services.update_task(task.pk, status="failed", error="boom")
        # Both alerts reach the healthy hook while the trickler still holds the first.
        assert wait_for(lambda: len(healthy.bodies) == 2, 2), healthy.bodies
        assert trickler.calls >= 1
        assert [b["task"]["name"] for b in healthy.bodies] == ["a", "b"]
        # The trickler's delivery ends at the deadline, as a failure.
        assert wait_for(lambda: Webhook.objects.get(pk=slow.pk).failures >= 1, 3 + 2)
        row = Webhook.objects.get(pk=slow.pk)
        assert "3 s" in row.last_error and row.last_sent_at is None
        assert stats.live.value("switchboard_webhook_failures_total") > failures
    finally:
        trickler.close()
        healthy.close()


@pytest.mark.django_db(transaction=True)
def test_a_redirect_is_a_failure_and_is_not_followed():
    inside = Receiver()
    redirecting = Receiver(statuses=[302] * 5, location=inside.url)
    hook = Webhook.objects.create(url=redirecting.url, name="redirects")
    try:
        session, _ = services.create_session(name="redirected")
        services.cancel_session(session.pk)
        assert wait_for(lambda: Webhook.objects.get(pk=hook.pk).failures >= 1, 5)
        row = Webhook.objects.get(pk=hook.pk)
        assert row.last_status == 302 and "302" in row.last_error and row.last_sent_at is None
        assert len(redirecting.bodies) >= 1
        assert inside.requests == []
    finally:
        redirecting.close()
        inside.close()


@pytest.mark.django_db(transaction=True)
def test_userinfo_is_sent_as_basic_auth_and_no_secret_is_logged(caplog):
    good = Receiver()
    bad = Receiver(statuses=[500] * 5)
    port = good.server.server_port
    Webhook.objects.create(url=f"http://user:secret@127.0.0.1:{port}/hook?token=abc", name="ok")
    failing = Webhook.objects.create(
        url=f"http://user:secret@127.0.0.1:{bad.server.server_port}/hook?token=abc", name="500"
    )
    down = Webhook.objects.create(
        url=f"http://user:secret@127.0.0.1:{free_port()}/hook?token=abc", name="down"
    )
    caplog.set_level(logging.INFO, logger="operations.alerts")
    try:
        session, _ = services.create_session(name="with a password")
        services.cancel_session(session.pk)
        assert wait_for(lambda: len(good.requests) == 1, 5), good.requests
        method, path, headers = good.requests[0]
        assert (method, path) == ("POST", "/hook?token=abc")
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:secret").decode()
        assert headers["Host"] == f"127.0.0.1:{port}"
        assert good.bodies[0]["session"]["name"] == "with a password"
        # Failures (an error status, a refused connection) say which hook, without its secrets.
        for row in (failing, down):
            assert wait_for(lambda row=row: Webhook.objects.get(pk=row.pk).failures >= 2, 5)
        assert len(bad.bodies) >= 2
        assert "HTTP 500" in Webhook.objects.get(pk=failing.pk).last_error
        logged = caplog.text
        assert f"127.0.0.1:{bad.server.server_port}/hook" in logged
        for secret in ("secret", "abc"):
            assert secret not in logged
            for row in Webhook.objects.filter(pk__in=[failing.pk, down.pk]):
                assert row.last_error and secret not in row.last_error
    finally:
        good.close()
        bad.close()


@pytest.mark.django_db(transaction=True)
def test_slack_markup_in_names_and_errors_is_escaped_in_text_only():
    receiver = Receiver()
    Webhook.objects.create(url=receiver.url, name="slack")
    name = "<!channel> <https://evil.example|Click>"
    error = "<@U123> & <!here> go to <https://evil.example|re-auth>"
    try:
        session, _ = services.create_session(name=name)
        task, _ = services.create_task(session.pk, name="<!here>", status="running")
        services.update_task(task.pk, status="failed", error=error)
        services.update_session(session.pk, status="failed")
        assert wait_for(lambda: len(receiver.bodies) == 2, 5), receiver.bodies
        told, ended = sorted(receiver.bodies, key=lambda b: b["seq"])
        assert told["event"] == "task.failed" and ended["event"] == "session.failed"
        assert told["text"] == (
            f"Task “&lt;!here&gt;” (#{task.pk}) of “&lt;!channel&gt; &lt;https://evil.example|Click&gt;”"
            " failed: &lt;@U123&gt; &amp; &lt;!here&gt; go to &lt;https://evil.example|re-auth&gt;"
        )
        assert ended["text"].startswith(
            "Session “&lt;!channel&gt; &lt;https://evil.example|Click&gt;”"
        )
        for body in (told, ended):
            assert "<" not in body["text"] and ">" not in body["text"]
            assert body["session"]["name"] == name
        assert told["task"]["name"] == "<!here>" and told["task"]["error"] == error
        # The stored event is the same alert.
        stored = Event.objects.get(kind="system.alert", id=told["seq"])
        assert stored.data["text"] == told["text"] and stored.data["session"]["name"] == name
    finally:
        receiver.close()

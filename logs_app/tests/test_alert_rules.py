"""Log alert rules: matched as lines are stored, one alert per quiet period
under a flood, webhooks through the outbox, patterns that cannot stall."""

import asyncio
import threading
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from live.models import Event
from live.tests import wsclient as wc
from logs_app import alerting
from logs_app import services as log_services
from logs_app.models import AlertRule, AlertState, LogEntry
from logs_app.rules import RuleSet, cache, load
from operations.models import Delivery
from operations.tests.test_alerts import Receiver, wait_for
from sessions_app import services
from sessions_app.models import Webhook

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _no_rules_kept():
    cache.forget()  # rules of an earlier test's database are gone without a signal
    yield
    cache.forget()


def alerts() -> list[Event]:
    return list(Event.objects.filter(kind="system.alert", data__event="log.rule").order_by("id"))


def flood(session_id: int, lines: int, batch: int, text: str = "disk full on /var") -> None:
    for start in range(0, lines, batch):
        log_services.append_entries(
            session_id,
            [
                {"message": f"{text} #{n}", "level": 40, "logger": "app.db.pool"}
                for n in range(start, min(lines, start + batch))
            ],
        )


@pytest.mark.django_db(transaction=True)
def test_a_log_rule_fires_once_per_quiet_period_under_a_flood_and_its_webhook_arrives():
    receiver = Receiver()
    try:
        hook = Webhook.objects.create(url=receiver.url, name="ops")
        Webhook.objects.create(url="http://127.0.0.1:9/not-this-one", name="other")
        rule = AlertRule.objects.create(
            name="disk <full>", pattern=r"disk full", level=30, logger="app.db",
            threshold=5, window_seconds=60, quiet_seconds=30,
        )  # fmt: skip
        rule.webhooks.add(hook)
        session, _ = services.create_session(name="nightly")
        flood(session.pk, 200, 20)
        # The first batch reaches the threshold: one alert, one delivery.
        [first] = alerts()
        assert first.data["count"] == 20 and first.data["rule"]["name"] == "disk <full>"
        assert first.data["text"].startswith("Log rule “disk &lt;full&gt;”: 20 matches in ")
        assert [line["message"] for line in first.data["lines"]] == [
            f"disk full on /var #{n}" for n in range(5)
        ]
        assert first.data["session"]["id"] == str(session.pk)
        assert first.data["url"].startswith(f"/sessions/{session.pk}/logs/?level=WARNING&since=")
        assert first.data["url"].endswith(f"#L{first.data['lines'][0]['id']}")
        assert Delivery.objects.count() == 1
        assert wait_for(lambda: len(receiver.bodies) == 1, 15)
        body = receiver.bodies[0]
        assert body["event"] == "log.rule" and body["seq"] == first.pk and body["count"] == 20
        assert body["url"] == first.data["url"] and len(body["lines"]) == 5
        # The other 180 were counted during the quiet period; its end tells them.
        assert AlertState.objects.get(rule=rule).pending == 180
        assert alerting.sweep() == 0  # still quiet
        after_quiet = timezone.now() + timedelta(seconds=31)
        assert alerting.sweep(now=after_quiet) == 1
        [_, grouped] = alerts()
        assert grouped.data["count"] == 180
        assert "180 matches in " in grouped.data["text"]
        assert grouped.data["lines"][0]["message"] == "disk full on /var #20"
        assert wait_for(lambda: len(receiver.bodies) == 2, 15)
        assert receiver.bodies[1]["count"] == 180 and receiver.bodies[1]["seq"] == grouped.pk
        assert Delivery.objects.count() == 2  # never to the webhook the rule did not choose
        assert alerting.sweep(now=after_quiet) == 0  # told once
        state = AlertState.objects.get(rule=rule)
        assert state.fired == 2 and state.quiet_until == after_quiet + timedelta(seconds=30)
    finally:
        receiver.close()


@pytest.mark.django_db(transaction=True)
def test_lines_the_rule_does_not_match_fire_nothing_and_write_no_state():
    session, _ = services.create_session(name="quiet")
    other, _ = services.create_session(name="elsewhere")
    task, _ = services.create_task(session.pk, name="load")
    rule = AlertRule.objects.create(
        name="db errors", session=session, task=task, level=40, logger="app.db", pattern="timeout"
    )
    near_misses = [
        {"message": "timeout", "level": 30, "logger": "app.db", "task_id": task.pk},  # level
        {"message": "timeout", "level": 40, "logger": "app.dbx", "task_id": task.pk},  # logger
        {"message": "timeout", "level": 40, "logger": "app.db"},  # no task
        {"message": "all fine", "level": 40, "logger": "app.db", "task_id": task.pk},  # text
    ]
    log_services.append_entries(session.pk, near_misses)
    log_services.append_entries(other.pk, [{"message": "timeout", "level": 50}])
    assert alerts() == []
    state = AlertState.objects.get(rule=rule)
    assert state.recent == [] and state.fired == 0
    # The same filters do match the line they describe.
    line = {"message": "read timeout", "level": 50, "logger": "app.db.pool", "task_id": task.pk}
    log_services.append_entries(session.pk, [line])
    [alert] = alerts()
    assert alert.data["lines"][0]["message"] == "read timeout"
    assert f"task={task.pk}" in alert.data["url"] and "level=ERROR" in alert.data["url"]


@pytest.mark.django_db(transaction=True)
def test_below_the_threshold_nothing_fires_and_old_matches_leave_the_window():
    rule = AlertRule.objects.create(name="three", pattern="^oops", threshold=3, window_seconds=60)
    session, _ = services.create_session(name="s")
    log_services.append_entries(session.pk, [{"message": "oops 1"}, {"message": "oops 2"}])
    assert alerts() == []
    # Those two are older than the window by the time the third comes.
    state = AlertState.objects.get(rule=rule)
    state.recent = [[item[0] - 61, *item[1:]] for item in state.recent]
    state.save()
    log_services.append_entries(session.pk, [{"message": "oops 3"}])
    assert alerts() == []
    log_services.append_entries(
        session.pk, [{"message": "oops 4"}, {"message": "no oops"}, {"message": "oops 5"}]
    )
    [alert] = alerts()
    assert alert.data["count"] == 3
    assert [line["message"] for line in alert.data["lines"]] == ["oops 3", "oops 4", "oops 5"]


@pytest.mark.django_db(transaction=True)
def test_a_catastrophic_pattern_does_not_stall_ingest():
    # (a+)+$ against a's ending in b backtracks for ever in Python's re.
    AlertRule.objects.create(name="hostile", pattern=r"(a+)+$")
    AlertRule.objects.create(name="also", pattern=r"^(a|aa)+$")
    session, _ = services.create_session(name="s")
    hostile = "a" * 200_000 + "b"
    log_services.append_entries(session.pk, [{"message": hostile}] * 3)
    assert LogEntry.objects.filter(session=session).count() == 3
    assert alerts() == []
    log_services.append_entries(session.pk, [{"message": "a" * 50_000}])
    assert {a.data["rule"]["name"] for a in alerts()} == {"hostile", "also"}


@pytest.mark.django_db(transaction=True)
def test_a_bad_pattern_is_refused_in_the_admin_naming_the_field(admin_client):
    url = "/admin/logs_app/alertrule/add/"
    form = {
        "name": "bad", "active": "on", "level": "0", "logger": "", "threshold": "1",
        "window_seconds": "60", "quiet_seconds": "300",
    }  # fmt: skip
    for pattern in ["(unclosed", r"(a)\1", "(?=lookahead)"]:
        response = admin_client.post(url, {**form, "pattern": pattern})
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert list(errors) == ["pattern"], errors
        assert "not a valid regular expression" in errors["pattern"][0]
    assert not AlertRule.objects.exists()
    response = admin_client.post(url, {**form, "pattern": r"disk (full|gone) \d+"})
    assert response.status_code == 302
    assert AlertState.objects.filter(rule__name="bad").exists()
    assert admin_client.get("/admin/logs_app/alertrule/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_rules_are_reloaded_when_saved_and_matched_in_one_pass():
    assert not cache.active()
    rule = AlertRule.objects.create(name="r", pattern="x+y", logger="a")
    assert [r.id for r in cache.active().rules] == [rule.pk]
    rule.active = False
    rule.save()
    assert not cache.active()
    rules = RuleSet(load() + [])
    assert not rules
    AlertRule.objects.create(name="plain", level=40)
    AlertRule.objects.create(name="text", pattern="boom")
    rules = RuleSet(load())
    entries = [
        LogEntry(1, 7, None, None, 20, "", "boom"),
        LogEntry(2, 7, None, None, 40, "", "calm"),
        LogEntry(3, 7, None, None, 40, "", "boom"),
    ]
    found = {rule.name: [e.pk for e in hits] for rule, hits in rules.match(7, entries).items()}
    assert found == {"text": [1, 3], "plain": [2, 3]}


@pytest.mark.django_db(transaction=True)
@override_settings(ROOT_PATH="/switchboard")
def test_the_link_is_absolute_with_a_public_url(settings):
    settings.SWITCHBOARD = {**settings.SWITCHBOARD, "PUBLIC_URL": "https://ops.example.com/sb"}
    AlertRule.objects.create(name="any")
    session, _ = services.create_session(name="s")
    log_services.append_entries(session.pk, [{"message": "hello"}])
    [alert] = alerts()
    assert alert.data["url"].startswith(f"https://ops.example.com/sb/sessions/{session.pk}/logs/?")
    assert (
        alert.data["text"].endswith("|log>")
        and "<https://ops.example.com/sb/" in alert.data["text"]
    )


async def test_the_alert_is_on_the_socket_live_and_on_resume_from_two_processes(
    fresh_server, admin_token
):
    receiver = Receiver()
    try:
        await asyncio.to_thread(
            AlertRule.objects.create, name="flood", pattern="FAIL", quiet_seconds=300
        )
        one = fresh_server(SWITCHBOARD_WEBHOOKS=receiver.url)
        two = fresh_server(SWITCHBOARD_WEBHOOKS=receiver.url)
        api = one.client(admin_token)
        session = await asyncio.to_thread(api.create_session, "flooded")
        async with await wc.connect(one.ws_url, admin_token) as ws:
            reply = await wc.subscribe(ws, "system")

            def write(server, first):
                client = server.client(admin_token)
                for start in range(first, first + 100, 10):
                    client.log(
                        session["id"], [{"message": f"FAIL {n}"} for n in range(start, start + 10)]
                    )

            writers = [
                threading.Thread(target=write, args=(srv, first))
                for srv, first in ((one, 0), (two, 100))
            ]
            for writer in writers:
                writer.start()
            for writer in writers:
                await asyncio.to_thread(writer.join, 60)
            frame, _ = await wc.recv_until(ws, lambda f: f.get("event") == "system.alert")
            assert frame["data"]["event"] == "log.rule" and frame["data"]["rule"]["name"] == "flood"
        # Both processes stored the flood; one alert was recorded, one POST made.
        assert await asyncio.to_thread(lambda: len(alerts())) == 1
        state = await asyncio.to_thread(AlertState.objects.get, rule__name="flood")
        assert state.pending + frame["data"]["count"] == 200 and state.fired == 1
        assert await asyncio.to_thread(wait_for, lambda: len(receiver.bodies) == 1, 15)
        assert receiver.bodies[0]["seq"] == frame["seq"]
        async with await wc.connect(two.ws_url, admin_token) as ws:
            await wc.subscribe(ws, "system", since=reply["seq"])
            again, _ = await wc.recv_until(ws, lambda f: f.get("event") == "system.alert")
            assert again["seq"] == frame["seq"] and again["data"]["count"] == frame["data"]["count"]
        assert await asyncio.to_thread(Delivery.objects.count) == 1
    finally:
        receiver.close()


def test_a_public_url_that_is_not_http_is_refused_at_start():
    import os
    import subprocess
    import sys

    probe = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'project.settings';"
        "django.setup(); from django.conf import settings; print(settings.PUBLIC_URL)"
    )
    for value, ok in (("https://ops.example.com/sb/", True), ("ops.example.com", False)):
        result = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, "SWITCHBOARD_PUBLIC_URL": value},
            capture_output=True, text=True,
        )  # fmt: skip
        if ok:
            assert result.returncode == 0 and result.stdout.strip() == "https://ops.example.com/sb"
        else:
            assert result.returncode != 0 and "SWITCHBOARD_PUBLIC_URL" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_with_no_rules_ingest_reads_no_rule_and_a_change_elsewhere_is_noticed(monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from logs_app import rules

    session, _ = services.create_session(name="s")
    log_services.append_entries(session.pk, [{"message": "first"}])  # the version is read
    monkeypatch.setattr(rules, "CHECK_SECONDS", 3600.0)
    with CaptureQueriesContext(connection) as queries:
        log_services.append_entries(session.pk, [{"message": f"line {n}"} for n in range(50)])
    assert queries.captured_queries
    assert not [q for q in queries.captured_queries if "alert" in q["sql"].lower()]
    # A rule written by another process (no signal here) is seen once the
    # version is read again.
    AlertRule.objects.bulk_create([AlertRule(name="elsewhere", pattern="boom")])
    log_services.append_entries(session.pk, [{"message": "boom"}])
    assert alerts() == []  # not read yet: the version was read within CHECK_SECONDS
    monkeypatch.setattr(rules, "CHECK_SECONDS", 0.0)
    assert [rule.name for rule in cache.active().rules] == ["elsewhere"]
    AlertRule.objects.update(active=False, updated_at=timezone.now())
    assert not cache.active()

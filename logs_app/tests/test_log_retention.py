"""`prune --keep-lines`: a running session's log kept within a size, and what
its readers see afterwards (the logs channel, the events API, the pages)."""

import io
import re

import pytest
from channels.db import database_sync_to_async
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from live.models import Event, EventChannel
from live.publisher import publisher
from live.tests.test_commit_order import held_open, no_waiting
from live.tests.test_consumer import connect, next_event, subscribe
from logs_app import retention
from logs_app import services as log_services
from logs_app.models import LogEntry
from sessions_app import services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

db = database_sync_to_async


def run(*args) -> str:
    out = io.StringIO()
    call_command("prune", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def running_log(batches: int = 10, lines: int = 10, owner=None):
    """A running session with `batches` log.append events of `lines` lines each."""
    session = services.create_session(name="long job", owner=owner)[0]
    services.update_session(session.pk, status="running")
    for b in range(batches):
        log_services.append_entries(
            session.pk, [{"message": f"batch {b} line {n}"} for n in range(lines)]
        )
    return session


def log_appends(session_id: int) -> list[int]:
    return list(
        Event.objects.filter(session_id=session_id, kind="log.append").values_list("id", flat=True)
    )


def test_a_running_session_is_trimmed_to_its_newest_lines_oldest_first_in_batches():
    """100 lines in ten events, keep 30, 7 a statement: the 70 oldest go in
    ten deletes of at most 7 lines, in id order, with the seven events that
    carried them and their places; the session keeps running and logging,
    and another session is left alone."""
    session = running_log()
    other = running_log(batches=2)
    ids = list(LogEntry.objects.filter(session=session).values_list("id", flat=True))
    seqs = log_appends(session.pk)
    table = connection.ops.quote_name(LogEntry._meta.db_table)
    with CaptureQueriesContext(connection) as queries:
        out = run("--keep-lines", "30", "--batch-size", "7")
    assert "Trimmed 70 log lines of 1 sessions to their newest 30." in out
    deletes = [q["sql"] for q in queries if q["sql"].startswith(f"DELETE FROM {table}")]
    deleted = [[int(n) for n in re.findall(r"\d+", sql.split(" IN ", 1)[1])] for sql in deletes]
    assert len(deleted) == 10 and all(len(batch) <= 7 for batch in deleted), deletes
    assert [pk for batch in deleted for pk in batch] == ids[:70]  # oldest first
    assert list(LogEntry.objects.filter(session=session).values_list("id", flat=True)) == ids[70:]
    assert log_appends(session.pk) == seqs[7:]
    placed = EventChannel.objects.filter(channel=f"logs:{session.pk}")
    assert list(placed.values_list("event_id", flat=True)) == seqs[7:]
    assert LogEntry.objects.filter(session=other).count() == 20
    log_services.append_entries(session.pk, [{"message": "still going"}])
    assert placed.order_by("-event_id").first().prev == seqs[-1]
    assert run("--keep-lines", "31").startswith("Trimmed 0 log lines of 0 sessions")


def test_an_event_straddling_the_limit_goes_whole_and_the_newest_stays_whole():
    session = running_log(batches=3, lines=10)
    assert "Would trim 20 log lines" in run("--keep-lines", "15", "--dry-run")
    assert LogEntry.objects.filter(session=session).count() == 30
    run("--keep-lines", "15")  # the event holding line 15 goes whole: 10 kept
    assert LogEntry.objects.filter(session=session).count() == 10
    run("--keep-lines", "4")  # the newest event alone is over: it stays whole
    assert LogEntry.objects.filter(session=session).count() == 10


def test_the_setting_trims_without_the_option(settings):
    settings.SWITCHBOARD = {**settings.SWITCHBOARD, "LOG_LINES_PER_SESSION": 20}
    session = running_log()
    assert "Trimmed 80 log lines" in run()
    assert LogEntry.objects.filter(session=session).count() == 20
    assert "Trimmed" not in run("--older-than", "30", "--keep-lines", "0")


@pytest.mark.parametrize(
    "args, option",
    [
        (["--keep-lines", "-1"], "--keep-lines"),
        (["--keep-lines", "many"], "--keep-lines"),
        (["--keep-lines", "10", "--batch-size", "0"], "--batch-size"),
        (["--keep-lines", "10", "--batch-size", "1000001"], "--batch-size"),
        (["--older-than", "nan"], "--older-than"),
        (["--older-than", "1e12"], "--older-than"),
        ([], "--older-than"),
    ],
)
def test_bad_values_are_a_command_error_naming_the_option(args, option):
    running_log(batches=2)
    with pytest.raises(CommandError, match=re.escape(option)):
        run(*args)
    assert LogEntry.objects.count() == 20


async def test_a_logs_reader_resuming_from_before_the_trim_is_reset_with_a_snapshot(
    admin_token, admin_user
):
    session = await db(running_log)(owner=admin_user)
    seqs = await db(log_appends)(session.pk)
    channel = f"logs:{session.pk}"
    await db(run)("--keep-lines", "30")
    ws = await connect(admin_token)
    reply = await subscribe(ws, channel, since=seqs[3])  # its next lines are gone
    assert reply["reset"] is True and reply["seq"] == seqs[-1]
    messages = [e["message"] for e in reply["snapshot"]["entries"]]
    assert len(messages) == 30 and messages[0] == "batch 7 line 0"
    reply = await subscribe(ws, channel, since=seqs[6])  # the last one gone: no loss
    assert "reset" not in reply
    frames = [await next_event(ws, "log.append") for _ in range(3)]
    assert [f["seq"] for f in frames] == seqs[7:]
    assert all(len(f["data"]["entries"]) == 10 for f in frames)
    assert await ws.receive_nothing(0.3)
    await ws.disconnect()

    http = Client(headers={"Authorization": f"Bearer {admin_token}"})
    body = await db(lambda: http.get(f"/api/v1/events?channel={channel}&since={seqs[3]}").json())()
    assert body["reset"] is True
    body = await db(lambda: http.get(f"/api/v1/events?channel={channel}&since={seqs[6]}").json())()
    assert body["reset"] is False and [f["seq"] for f in body["results"]] == seqs[7:]


async def test_a_subscriber_behind_the_trim_starts_again_from_a_snapshot(
    admin_token, admin_user, monkeypatch
):
    """A live socket that missed batches (their messages lost) that the trim
    then deletes catches up, on the next batch, to a `subscribed` frame with
    `reset` and a fresh snapshot, not to the lines after a silent gap."""
    session = await db(running_log)(owner=admin_user)
    ws = await connect(admin_token)
    channel = f"logs:{session.pk}"
    await subscribe(ws, channel)
    real = publisher.publish
    monkeypatch.setattr(publisher, "publish", lambda messages: None)
    for b in range(10, 15):
        await db(log_services.append_entries)(
            session.pk, [{"message": f"batch {b} line {n}"} for n in range(10)]
        )
    monkeypatch.setattr(publisher, "publish", real)
    await db(run)("--keep-lines", "20")  # batches 10 to 12 go, unseen
    await db(log_services.append_entries)(session.pk, [{"message": "after"}])
    reply = await ws.receive_json_from(timeout=5)
    assert reply["type"] == "subscribed" and reply["reset"] is True, reply
    messages = [e["message"] for e in reply["snapshot"]["entries"]]
    assert messages[0] == "batch 13 line 0" and len(messages) in (20, 21)
    if len(messages) == 20:  # the head check found the loss before "after" came
        frame = await next_event(ws, "log.append")
        messages.append(frame["data"]["entries"][0]["message"])
    assert messages[-1] == "after"
    await db(log_services.append_entries)(session.pk, [{"message": "later"}])
    frame = await next_event(ws, "log.append")
    assert [e["message"] for e in frame["data"]["entries"]] == ["later"]
    await ws.disconnect()


def test_log_pages_of_a_trimmed_session_end_at_the_oldest_line_kept(admin_token):
    session = running_log()
    run("--keep-lines", "30")
    http = Client(headers={"Authorization": f"Bearer {admin_token}"})
    url = f"/api/v1/sessions/{session.pk}/logs"
    page = http.get(f"{url}?limit=1000").json()
    assert [e["message"] for e in page["entries"]][:2] == ["batch 7 line 0", "batch 7 line 1"]
    assert len(page["entries"]) == 30 and page["has_more"] is False
    newest = http.get(f"{url}?limit=20").json()
    assert newest["has_more"] is True
    older = http.get(f"{url}?limit=20&before={newest['next_before']}").json()
    assert len(older["entries"]) == 10 and older["has_more"] is False
    assert http.get(f"{url}?before={page['entries'][0]['id']}").json()["entries"] == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has one writer at a time")
def test_writers_are_not_blocked_while_a_trim_batch_is_held_open():
    """A trim of session A, all its batches held open in one transaction (far
    worse than prune, which commits each): a report, a log batch and a
    change on session B commit without waiting for any lock, and so does a
    log batch of A itself. A write to a line the trim holds does wait: the
    probe can tell a wait when there is one."""
    busy = running_log()
    other = running_log(batches=1)
    task = services.create_task(other.pk, name="t", status="running")[0]
    through = retention.cut(busy.pk, 30)
    first = LogEntry.objects.filter(session=busy).order_by("id").first().pk
    with held_open(lambda: retention.trim(busy.pk, through, batch=7)), no_waiting():
        services.update_task(task.pk, progress=10)
        log_services.append_entries(other.pk, [{"message": "elsewhere"}])
        services.update_session(other.pk, name="renamed")
        log_services.append_entries(busy.pk, [{"message": "the trimmed log goes on"}])
        with pytest.raises(OperationalError, match="lock timeout"):
            LogEntry.objects.filter(pk=first).update(message="x")
    assert LogEntry.objects.filter(session=busy).count() == 31

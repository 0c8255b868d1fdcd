"""Management commands, through call_command with captured output."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from live.models import ApiToken, Event, hash_token
from logs_app import services as log_services
from logs_app.models import LogEntry
from sessions_app import output, services
from sessions_app.models import Session, Task

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_create_token_prints_a_working_token_on_its_last_line(admin_user):
    token = run("create_token", "admin").strip().splitlines()[-1]
    assert ApiToken.objects.get().digest == hash_token(token)
    assert ApiToken.authenticate(token) == admin_user
    assert token not in str(ApiToken.objects.values_list())


def test_create_token_for_an_unknown_user_is_a_command_error(db):
    with pytest.raises(CommandError, match="no user named"):
        run("create_token", "ghost")
    assert run("create_token", "ghost", "--create-user").strip().splitlines()[-1].startswith("sb_")


def make_history():
    session = services.create_session(name="nightly", external_id="job-7", metadata={"a": 1})[0]
    task = services.create_task(session.pk, name="load", external_id="load")[0]
    services.update_task(task.pk, status="running", progress=40, message="half")
    output.append_output(task.pk, "tok ")
    log_services.append_entries(
        session.pk,
        [
            {"message": "started", "level": 20, "uid": "u1"},
            {"message": "oops\n  trace", "level": 40, "task_id": task.pk, "extra": {"k": 1}},
        ],
    )
    services.update_task(task.pk, status="completed", result={"rows": 9})
    services.update_session(session.pk, status="completed")
    other = services.create_session(name="other")[0]
    return session, other


def state():
    sessions = list(
        Session.objects.order_by("id").values(
            "name", "external_id", "status", "metadata", "completed_tasks", "total_tasks"
        )
    )
    tasks = list(
        Task.objects.order_by("id").values(
            "name", "external_id", "status", "progress", "message", "result", "attempt"
        )
    )
    logs = list(
        LogEntry.objects.order_by("id").values(
            "ts", "level", "message", "extra", "uid", "task__name"
        )
    )
    return sessions, tasks, logs


def test_export_writes_json_lines_only_and_filters(tmp_path):
    session, other = make_history()
    lines = [json.loads(line) for line in run("export_events").splitlines()]
    assert [line["event"] for line in lines][:2] == ["session.update", "task.update"]
    assert all({"ts", "event", "session", "data"} <= set(line) for line in lines)
    assert lines[0]["session"] == "job-7"
    log_line = next(line for line in lines if line["event"] == "log.append")
    assert [e["message"] for e in log_line["data"]["entries"]] == ["started", "oops\n  trace"]
    only = [json.loads(x) for x in run("export_events", "--session", str(other.pk)).splitlines()]
    assert {line["session"] for line in only} == {str(other.pk)}
    since = lines[3]["seq"]
    later = [json.loads(x) for x in run("export_events", "--since", str(since)).splitlines()]
    assert [line["seq"] for line in later] == [line["seq"] for line in lines if line["seq"] > since]
    target = tmp_path / "out.jsonl"
    run("export_events", "--output", str(target))
    assert target.read_text().count("\n") == len(lines)
    with pytest.raises(CommandError, match="no session"):
        run("export_events", "--session", "nope")


def test_replaying_an_export_into_an_empty_database_rebuilds_the_same_state(tmp_path):
    make_history()
    exported = tmp_path / "events.jsonl"
    run("export_events", "--output", str(exported))
    before = state()
    ids = list(Session.objects.values_list("pk", flat=True))
    for model in (LogEntry, Task, Session, Event):
        model.objects.all().delete()
    output = run("replay_events", str(exported), "--speed", "0")
    assert "Replayed" in output
    assert state() == before
    assert list(Session.objects.values_list("pk", flat=True)) == ids
    # New rows after a replay that kept ids do not collide with them.
    assert services.create_session(name="after")[0].pk > max(ids)


def test_replaying_into_a_live_database_updates_by_external_id(tmp_path):
    session, _ = make_history()
    lines = [
        {"ts": "2026-01-01T00:00:00+00:00", "event": "task.update", "session": "job-7",
         "task": "load", "data": {"name": "load", "status": "completed", "message": "again"}},
        {"ts": "2026-01-01T00:00:01+00:00", "event": "session.update", "session": "fresh-1",
         "data": {"name": "brand new", "status": "running"}},
    ]  # fmt: skip
    path = tmp_path / "live.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run("replay_events", str(path), "--speed", "0")
    assert Task.objects.get(external_id="load").message == "again"
    assert Task.objects.count() == 1
    assert Session.objects.get(external_id="fresh-1").status == "running"


def write_lines(path, lines: list[dict]):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_replay_names_an_ownerless_session_first_then_the_one_owner_with_it(
    tmp_path, worker_user, other_user
):
    """A replay acts for no owner: its external_id names an ownerless session
    if there is one, else the one owner's that has it."""
    ownerless = services.create_session(name="ownerless", external_id="shared")[0]
    owned = services.create_session(name="worker's", external_id="shared", owner=worker_user)[0]
    only = services.create_session(name="worker's", external_id="only-one", owner=worker_user)[0]
    path = write_lines(tmp_path / "lines.jsonl", [
        {"event": "session.update", "session": "shared", "data": {"status": "running"}},
        {"event": "session.update", "session": "only-one", "data": {"status": "paused"}},
    ])  # fmt: skip
    run("replay_events", path, "--speed", "0")
    statuses = dict(Session.objects.values_list("pk", "status"))
    assert statuses == {ownerless.pk: "running", owned.pk: "pending", only.pk: "paused"}


def test_an_external_id_of_several_owners_and_no_ownerless_session_is_refused_naming_it(
    tmp_path, worker_user, other_user
):
    mine = services.create_session(name="a", external_id="job", owner=worker_user)[0]
    theirs = services.create_session(name="b", external_id="job", owner=other_user)[0]
    path = write_lines(tmp_path / "lines.jsonl", [
        {"event": "session.update", "session": "fresh", "data": {"name": "new"}},
        {"event": "session.update", "session": "job", "data": {"status": "running"}},
    ])  # fmt: skip
    with pytest.raises(CommandError) as error:
        run("replay_events", path, "--speed", "0")
    assert "line 2: session: external_id 'job' names sessions of several owners" in str(error.value)
    assert f"ids {mine.pk}, {theirs.pk}" in str(error.value)
    assert "nothing was replayed" in str(error.value)
    assert Session.objects.count() == 2 and not Session.objects.filter(status="running").exists()
    with pytest.raises(CommandError, match="external_id 'job' names sessions of several owners"):
        run("export_events", "--session", "job")
    # By its id, either one is found.
    exported = [json.loads(x) for x in run("export_events", "--session", str(mine.pk)).splitlines()]
    assert exported and {line["session"] for line in exported} == {str(mine.pk)}


def test_an_export_names_a_session_by_id_where_its_external_id_is_not_its_alone(
    tmp_path, worker_user, other_user
):
    """Written by external_id only when by_key would find that session by it;
    so replaying the export into the same database changes each one itself."""
    ownerless = services.create_session(name="ownerless", external_id="shared")[0]
    owned = services.create_session(name="owned", external_id="shared", owner=worker_user)[0]
    alone = services.create_session(name="alone", external_id="mine", owner=other_user)[0]
    lines = [json.loads(line) for line in run("export_events").splitlines()]
    assert {line["session"] for line in lines} == {"shared", str(owned.pk), "mine"}
    for session in (ownerless, owned, alone):
        services.update_session(session.pk, name=f"{session.name} renamed")
    exported = write_lines(tmp_path / "events.jsonl", lines)
    run("replay_events", exported, "--speed", "0")
    names = dict(Session.objects.values_list("pk", "name"))
    assert names == {ownerless.pk: "ownerless", owned.pk: "owned", alone.pk: "alone"}
    assert Session.objects.count() == 3


@pytest.mark.parametrize(
    "bad, message",
    [
        ("not json", "line 2: not valid JSON"),
        ('{"event": "nope", "session": "1", "data": {}}', "line 2: unknown event"),
        ('{"event": "task.update", "session": "1", "data": {}}', "line 2: task.update needs"),
        ('{"event": "session.update", "data": {}}', "line 2: session must"),
        ('{"event": "progress.update", "session": "1", "task": "1", "data": {"progress": 300}}',
         "line 2: data.progress"),
        ('{"event": "log.append", "session": "1", "data": {"entries": [{"level": "INFO"}]}}',
         "line 2: data.entries.0.message"),
    ],
)  # fmt: skip
def test_a_bad_line_fails_with_its_number_and_changes_nothing(tmp_path, bad, message):
    good = '{"event": "session.update", "session": "s-1", "data": {"name": "first"}}'
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + bad + "\n")
    with pytest.raises(CommandError) as error:
        run("replay_events", str(path))
    assert message in str(error.value)
    assert Session.objects.count() == 0 and Event.objects.count() == 0


def test_a_line_the_services_refuse_keeps_the_lines_before_it_in_its_batch(tmp_path):
    lost = services.create_task(services.create_session(name="old")[0].pk, name="gone")[0]
    Task.objects.filter(pk=lost.pk).update(lost=True, status="failed")
    lines = [
        {"event": "session.update", "session": "s-1", "data": {"name": "one", "status": "running"}},
        {"event": "session.update", "session": "s-1", "data": {"status": "completed"}},
        # An ended session does not start again: the status is left out, not refused.
        {"event": "session.update", "session": "s-1", "data": {"status": "running"}},
        # A report on a task failed as lost is refused, as over HTTP.
        {"event": "progress.update", "session": str(lost.session_id), "task": str(lost.pk),
         "data": {"progress": 5}},
        {"event": "session.update", "session": "s-2", "data": {"name": "two"}},
    ]  # fmt: skip
    path = tmp_path / "refused.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(CommandError) as error:
        run("replay_events", str(path), "--speed", "0")
    assert "line 4: status" in str(error.value)
    assert "the 3 lines before it were replayed" in str(error.value)
    replayed = Session.objects.exclude(pk=lost.session_id)
    assert list(replayed.values_list("external_id", "status")) == [("s-1", "completed")]
    statuses = [
        e.data["status"] for e in Event.objects.filter(kind="session.update").order_by("id")
    ]
    assert statuses[-1] == "completed" and "running" in statuses
    assert Task.objects.get(pk=lost.pk).progress == 0


def test_replay_keeps_the_recorded_timing_scaled_by_speed(tmp_path, monkeypatch):
    from sessions_app import eventfiles

    slept = []
    lines = eventfiles.parse_lines(
        iter(
            [
                '{"ts": "2026-01-01T00:00:00+00:00", "event": "session.update", "session": "a", "data": {"name": "a"}}',
                '{"ts": "2026-01-01T00:00:04+00:00", "event": "session.update", "session": "a", "data": {"status": "running"}}',
            ]
        )
    )
    eventfiles.Replay(lines, speed=2, sleep=slept.append).run()
    assert slept == [2.0]
    assert Session.objects.get(external_id="a").status == "running"


def test_replay_rejects_a_missing_file_and_a_bad_speed(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run("replay_events", str(tmp_path / "missing.jsonl"))
    with pytest.raises(CommandError, match="speed"):
        run("replay_events", str(tmp_path / "missing.jsonl"), "--speed", "-1")


def test_prune_deletes_ended_sessions_and_old_events_and_marks_the_cut(tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    from live.events import pruned_through

    old, _ = make_history()
    running = services.create_session(name="still running")[0]
    long_ago = timezone.now() - timedelta(days=40)
    Session.objects.filter(pk=old.pk).update(finished_at=long_ago)
    Event.objects.update(ts=long_ago)
    newest_old = Event.objects.order_by("-id").first().pk
    services.update_session(running.pk, status="running")  # a recent event stays
    assert "Would delete 1 sessions" in run("prune", "--older-than", "30", "--dry-run")
    assert Session.objects.filter(pk=old.pk).exists()
    run("prune", "--older-than", "30")
    assert not Session.objects.filter(pk=old.pk).exists()
    assert Session.objects.filter(pk=running.pk).exists()
    assert pruned_through() == newest_old
    assert not Event.objects.filter(id__lte=newest_old).exists()
    with pytest.raises(CommandError):
        run("prune", "--older-than", "-1")


def test_prune_deletes_a_sessions_log_lines_in_bounded_batches(monkeypatch):
    """Seven lines, three at a time: three deletes of lines, each its own
    statement, before the session's own delete; the lines all go."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from logs_app import services as log_services
    from logs_app.models import LogEntry
    from sessions_app.management.commands import prune

    old = services.create_session(name="old")[0]
    log_services.append_entries(old.pk, [{"message": f"line {n}"} for n in range(7)])
    services.update_session(old.pk, status="completed")
    Session.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=40))
    monkeypatch.setattr(prune, "BATCH", 3)
    table = LogEntry._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        run("prune", "--older-than", "30")
    deletes = [q["sql"] for q in queries if q["sql"].startswith(f'DELETE FROM "{table}"')]
    by_id = [sql for sql in deletes if '"id" IN' in sql]
    assert len(by_id) == 3, deletes  # 3 + 3 + 1
    assert not LogEntry.objects.filter(session_id=old.pk).exists()
    assert not Session.objects.filter(pk=old.pk).exists()


def test_prune_deletes_old_webhook_deliveries_made_or_given_up_but_never_pending(db):
    from datetime import timedelta

    from django.utils import timezone

    from operations.models import Delivery

    long_ago = timezone.now() - timedelta(days=40)
    kept = {}
    for status, created in [
        ("delivered", long_ago),
        ("failed", long_ago),
        ("pending", long_ago),
        ("delivered", timezone.now()),
    ]:
        row = Delivery.objects.create(
            url_key="e" * 64, target="http://127.0.0.1/hook", event="task.failed", seq=1,
            payload={}, status=status, created_at=created,
        )  # fmt: skip
        kept[row.pk] = status == "pending" or created != long_ago
    assert "Would delete 2 webhook deliveries" in run("prune", "--older-than", "30", "--dry-run")
    assert Delivery.objects.count() == 4
    assert "Deleted 2 webhook deliveries" in run("prune", "--older-than", "30")
    assert set(Delivery.objects.values_list("pk", flat=True)) == {
        pk for pk, stays in kept.items() if stays
    }


def test_the_demo_refuses_a_busy_port_and_changes_nothing(db):
    import socket

    from django.contrib.auth import get_user_model

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(CommandError, match="already in use"):
            run("demo", f"127.0.0.1:{port}")
    assert not get_user_model().objects.filter(username="demo").exists()


def test_the_demo_login_stays_the_same_across_runs(db, tmp_path):
    from django.contrib.auth import get_user_model

    from operations.management.commands.demo import demo_password

    user = get_user_model().objects.create_user("demo")
    first = demo_password(user, tmp_path / "login")
    user.save()
    assert demo_password(user, tmp_path / "login") == first
    assert user.check_password(first)
    user.set_password("changed elsewhere")
    assert demo_password(user, tmp_path / "login") != first  # a new one, written down


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "line, message",
    [
        ({"event": "session.update", "session": "9" * 30, "data": {}}, "line 1: session is not an id"),
        ({"event": "session.update", "session": "s" * 201, "data": {}}, "line 1: session must be at most 200"),
        ({"event": "session.update", "session": "\udc00", "data": {}}, "line 1: session must be valid Unicode"),
        ({"event": "session.update", "session": "s", "data": {"external_id": "e" * 500}}, "data.external_id must be at most 200"),
        ({"event": "task.update", "session": "s", "task": "9" * 5000, "data": {}}, "line 1: task must be at most 200"),
        ({"event": "task.update", "session": "s", "task": "t", "data": {"name": "\ud800"}}, "line 1: data.name"),
        ({"event": "log.append", "session": "s", "data": {"entries": [{"message": "m", "task_id": "9" * 40}]}}, "task_id"),
    ],
)  # fmt: skip
def test_replay_refuses_hostile_lines_by_number_and_changes_nothing(tmp_path, line, message):
    path = tmp_path / "hostile.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(CommandError, match=message):
        run("replay_events", str(path), "--speed", "0")
    assert Session.objects.count() == 0 and Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_replay_keeps_a_files_ids_only_where_they_cannot_exhaust_the_sequence(
    tmp_path, worker_user
):
    path = write_lines(tmp_path / "ids.jsonl", [
        {"event": "session.update", "session": "9223372036854775807", "data": {"name": "huge"}},
        {"event": "session.update", "session": "7", "data": {"name": "small"}},
        {"event": "session.update", "session": "a", "ts": "2020-01-01T00:00:00Z", "data": {"name": "then"}},
        {"event": "session.update", "session": "a", "ts": "2026-01-01T00:00:00Z", "data": {"name": "now"}},
    ])  # fmt: skip
    slept = []
    from sessions_app import eventfiles

    lines = eventfiles.parse_lines(iter(open_lines(path)))
    eventfiles.Replay(lines, speed=1, sleep=slept.append).run()
    assert slept == [eventfiles.MAX_GAP_SECONDS]  # six years, cut to a minute
    names = dict(Session.objects.values_list("name", "pk"))
    assert names["small"] == 7 and names["huge"] < 2**40
    # The id sequence was not moved to its end: new sessions still get ids.
    created = services.create_session(name="after", owner=worker_user)[0]
    assert created.pk < 2**40


def open_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return handle.readlines()


def test_the_demo_token_stays_the_same_across_runs_of_one_database(db, tmp_path):
    from django.contrib.auth import get_user_model

    from live.models import ApiToken
    from operations.management.commands.demo import demo_token

    user = get_user_model().objects.create_user("demo")
    first = demo_token(user, tmp_path / "token")
    assert demo_token(user, tmp_path / "token") == first
    assert ApiToken.authenticate(first) == user
    assert ApiToken.objects.filter(user=user).count() == 1
    # A database that no longer knows it (reset, or the token deleted): a new one.
    ApiToken.objects.filter(user=user).delete()
    second = demo_token(user, tmp_path / "token")
    assert second != first and ApiToken.authenticate(second) == user
    assert (tmp_path / "token").read_text().strip() == second


def rich_history():
    """A session with a failed task (and its alert), steps, output and logs."""
    session = services.create_session(name="rich", external_id="rich-1")[0]
    good = services.create_task(session.pk, name="good", external_id="good")[0]
    bad = services.create_task(session.pk, name="bad", external_id="bad")[0]
    services.update_task(good.pk, status="running", progress=50, message="half")
    output.append_step(good.pk, "thinking", "hm", {"depth": 1})
    output.append_output(good.pk, "Hello ")
    output.append_output(good.pk, "world", final=True)
    log_services.append_entries(session.pk, [{"message": "go", "level": 20, "task_id": good.pk}])
    services.update_task(good.pk, status="completed", result={"rows": 3})
    services.update_task(bad.pk, status="running")
    services.update_task(bad.pk, status="failed", error="boom")
    services.update_session(session.pk, status="failed")
    return Session.objects.get(pk=session.pk)


def copy_of(session: Session) -> dict:
    tasks = session.tasks.order_by("id")
    return {
        "session": (session.name, session.status, session.completed_tasks,
                    session.failed_tasks, session.total_tasks),
        "tasks": [(t.name, t.status, t.progress, t.message, t.result, t.error) for t in tasks],
        "output": [output.task_output(t)["text"] for t in tasks],
        "steps": [[s["status"] for s in output.task_output(t)["steps"]] for t in tasks],
        "logs": list(
            LogEntry.objects.filter(session_id=session.pk)
            .order_by("id")
            .values_list("level", "message")
        ),
        # Every kind, the alert among them; the replay's writes may group the
        # updates (and a session's alert may take in its task's: one write).
        "kinds": sorted(
            set(Event.objects.filter(session_id=session.pk).values_list("kind", flat=True))
        ),
        "alerted": Event.objects.filter(
            session_id=session.pk, kind="system.alert", data__event="session.failed"
        ).exists(),
    }  # fmt: skip


def test_an_export_replays_as_new_copies_beside_it_and_into_an_empty_database(tmp_path):
    original = rich_history()
    expected = copy_of(original)
    assert "system.alert" in expected["kinds"]
    exported = tmp_path / "rich.jsonl"
    run("export_events", "--session", str(original.pk), "--output", str(exported))
    assert "system.alert" in exported.read_text()

    # Into the database it came from: as is, it changes nothing it cannot (an
    # ended session does not start again) and says so in no error.
    run("replay_events", str(exported), "--speed", "0")
    assert Session.objects.count() == 1
    original.refresh_from_db()
    assert copy_of(original)["session"] == expected["session"]

    # As new copies: new ids, the same names, no external ids.
    run("replay_events", str(exported), "--speed", "0", "--as-new")
    copy = Session.objects.exclude(pk=original.pk).get()
    assert copy.name == "rich" and copy.external_id is None
    assert set(copy.tasks.values_list("external_id", flat=True)) == {None}
    assert not set(copy.tasks.values_list("pk", flat=True)) & set(
        original.tasks.values_list("pk", flat=True)
    )
    assert copy_of(copy) == expected

    # Into an empty database: the same ids back, and the same state.
    ids = (original.pk, sorted(original.tasks.values_list("pk", flat=True)))
    for model in (LogEntry, Task, Session, Event):
        model.objects.all().delete()
    run("replay_events", str(exported), "--speed", "0")
    again = Session.objects.get()
    assert (again.pk, sorted(again.tasks.values_list("pk", flat=True))) == ids
    assert copy_of(again) == expected


def test_a_refused_first_line_says_nothing_was_replayed(tmp_path):
    task = services.create_task(services.create_session(name="s")[0].pk, name="t")[0]
    Task.objects.filter(pk=task.pk).update(lost=True, status="failed")
    path = write_lines(tmp_path / "lost.jsonl", [
        {"event": "progress.update", "session": str(task.session_id), "task": str(task.pk),
         "data": {"progress": 5}},
    ])  # fmt: skip
    with pytest.raises(CommandError, match=r"line 1: status: .*; nothing was replayed"):
        run("replay_events", path, "--speed", "0")


def test_demo_help_shows_every_default():
    from operations.management.commands.demo import Command

    text = " ".join(Command().create_parser("manage.py", "demo").format_help().split())
    for default in (
        "(default: 127.0.0.1:8000)",
        "(default: 3)",
        "(default: 1.0)",
        "(default: demo)",
    ):
        assert default in text, text


def test_manage_py_outside_the_virtual_environment_uses_the_projects_own(tmp_path):
    """`python3 manage.py …` with a Python that lacks Django (as the README's
    commands may be typed): the command still runs, with .venv's Python."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    bare = tmp_path / "bare"
    subprocess.run(
        [sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", bare], check=True
    )
    answer = subprocess.run(
        [bare / "bin" / "python", root / "manage.py", "help", "create_token"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert "usage: manage.py create_token" in answer.stdout

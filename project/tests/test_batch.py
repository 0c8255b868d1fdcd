"""Many reports in one request: the batch endpoint (one transaction, all or
nothing) and the client's Reporter that coalesces a chatty worker."""

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.db import connection
from django.test import Client as DjangoClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from switchboard_client import Client, Reporter

from conftest import free_port, post
from live.models import Event, EventChannel
from live.tests import wsclient as wc
from project.batch import BatchIn, _apply
from sessions_app import eventfiles, services
from sessions_app.models import Session, Task

pytestmark = [pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]


@pytest.fixture
def http(worker_token):
    return DjangoClient(headers={"Authorization": f"Bearer {worker_token}"})


def test_a_batch_applies_reports_output_and_lines_in_one_go_in_that_order(http, other_token):
    session = post(http, "sessions", {"name": "chatty"})[1]
    one = post(http, f"sessions/{session['id']}/tasks", {"name": "one"})[1]
    two = post(http, f"sessions/{session['id']}/tasks", {"name": "two", "status": "running"})[1]
    before = Event.objects.count()
    status, answer = post(
        http,
        f"sessions/{session['id']}/batch",
        {
            "tasks": [{"id": one["id"], "progress": 40}, {"id": two["id"], "message": "busy"}],
            "output": [
                {"task_id": one["id"], "chunk": "Hello "},
                {"task_id": one["id"], "status": "thinking"},
                {"task_id": one["id"], "chunk": "world", "final": True},
            ],
            "logs": [{"message": "a", "task_id": one["id"]}, {"message": "b", "uid": "u1"}],
        },
    )
    assert status == 200, answer
    assert answer["tasks"] == 2 and answer["output"] == 3
    assert (answer["logs_stored"], answer["logs_skipped"]) == (2, 0)
    kinds = list(Event.objects.filter(pk__gt=before).order_by("id").values_list("kind", flat=True))
    assert kinds.index("progress.update") < kinds.index("task.output") < kinds.index("log.append")
    assert answer["seq"] == Event.objects.latest("id").pk
    assert (
        http.get(f"/api/v1/tasks/{one['id']}").json()["status"] == "running"
    )  # progress starts it
    assert http.get(f"/api/v1/tasks/{one['id']}/output").json()["text"] == "Hello world"

    # One refused item: a 400 naming it, and nothing of the batch applied.
    count = Event.objects.count()
    outsider = post(http, "sessions", {"name": "other"})[1]
    theirs = post(http, f"sessions/{outsider['id']}/tasks", {"name": "x"})[1]
    count = Event.objects.count()
    for body, field in (
        ({"tasks": [{"id": one["id"], "progress": 50}, {"id": two["id"], "progres": 1}]},
         "tasks.1.progres"),
        ({"tasks": [{"id": one["id"], "progress": 50}, {"id": two["id"], "progress": 500}]},
         "tasks.1.progress"),
        ({"tasks": [{"id": one["id"], "progress": 60}], "output": [{"task_id": theirs["id"], "chunk": "x"}]},
         "output.0.task_id"),
        ({"output": [{"task_id": one["id"], "status": "Bad Step"}]}, "output.0.status"),
        ({"tasks": [{"id": two["id"], "status": "completed"}, {"id": two["id"], "status": "running"}]},
         "tasks.1.status"),
        ({"logs": [{"message": "x", "ts": "9999-12-31T23:30:00-01:00"}]}, "logs.0.ts"),
    ):  # fmt: skip
        status, answer = post(http, f"sessions/{session['id']}/batch", body)
        assert status == 400 and field in answer["errors"], (body, answer)
        assert Event.objects.count() == count, body
    # Another user's session is not there for them.
    stranger = DjangoClient(headers={"Authorization": f"Bearer {other_token}"})
    assert post(stranger, f"sessions/{session['id']}/batch", {})[0] == 404


def test_the_reporter_turns_a_token_stream_into_a_few_requests(live, worker_token):
    client = Client(live.url, worker_token)
    session = client.create_session("streaming")
    task = client.create_task(session["id"], "answer")
    before = Event.objects.count()
    tokens = [f"t{n} " for n in range(300)]
    with Reporter(client, session["id"], interval=0.2) as report:
        for n, token in enumerate(tokens):
            report.output(task["id"], token, final=n == len(tokens) - 1)
            report.progress(task["id"], n / 3)
            if n % 100 == 0:
                report.status(task["id"], "thinking", step=n)
                report.log(f"at token {n}", task_id=task["id"])
            time.sleep(0.005)  # about 200 tokens a second
    assert report.errors == [] and report.dropped == 0
    output = client.request("GET", f"tasks/{task['id']}/output")
    assert output["text"] == "".join(tokens) and output["final"] is True
    assert [s["data"]["step"] for s in output["steps"]] == [0, 100, 200]
    assert client.get_task(task["id"])["progress"] == pytest.approx(299 / 3)
    assert len(client.logs(session["id"])["entries"]) == 3
    written = Event.objects.filter(pk__gt=before)
    # 300 chunks and 300 progress reports in 1.5 s: a few batches, not 600 writes.
    assert written.filter(kind="task.output").count() < 40
    assert written.filter(kind="progress.update").count() < 20


def test_the_reporter_never_blocks_or_raises_when_the_server_is_down():
    client = Client(f"http://127.0.0.1:{free_port()}", "sb_nobody", timeout=1)
    report = Reporter(client, 1, interval=0.1)
    for n in range(50):
        report.output(1, f"{n} ")
        report.log("line")
    started = time.monotonic()
    report.close(timeout=2)
    assert time.monotonic() - started < 4


def _reports_batch(session, tasks, per_task: int) -> BatchIn:
    reports = [
        {"id": task.pk, "progress": (n * 7) % 100, "message": f"step {n}"}
        for n in range(per_task)
        for task in tasks
    ]
    steps = [{"task_id": task.pk, "status": "thinking", "message": "hm"} for task in tasks]
    chunks = [{"task_id": task.pk, "chunk": "text "} for task in tasks]
    done = [{"id": tasks[0].pk, "status": "completed"}]
    return BatchIn(tasks=reports + done, output=steps + chunks)


def _batch_queries(size: int) -> tuple[int, list[int]]:
    session, _ = services.create_session(name=f"sized {size}")
    tasks = [services.create_task(session.pk, name=f"t{n}")[0] for n in range(size)]
    batch = _reports_batch(session, tasks, per_task=3)
    before = Event.objects.order_by("-id").values_list("id", flat=True).first()
    with CaptureQueriesContext(connection) as queries:
        answer = _apply(session.pk, batch)
    assert answer["tasks"] == 3 * size + 1 and answer["output"] == 2 * size
    return len(queries), list(
        Event.objects.filter(pk__gt=before).order_by("id").values_list("id", flat=True)
    )


def test_a_batch_writes_each_kind_in_statements_that_do_not_grow_with_it():
    small, small_events = _batch_queries(3)
    large, large_events = _batch_queries(60)
    # 3 reports a task, a step and a chunk each, one task completed: the
    # events of 3 tasks and of 60 take the same statements.
    assert small == large, (small, large)
    # A task: 3 progress.update, a step, a chunk, and the task.update of its
    # start; the session's start and the completed task: 3 more.
    assert len(small_events) == 3 * 6 + 3 and len(large_events) == 60 * 6 + 3


def test_the_events_of_a_batch_chain_on_every_channel_and_the_rows_match_them():
    session, _ = services.create_session(name="chained")
    tasks = [services.create_task(session.pk, name=f"t{n}")[0] for n in range(4)]
    services.update_task(tasks[1].pk, progress=5)  # a head before the batch
    _apply(session.pk, _reports_batch(session, tasks, per_task=5))
    _apply(session.pk, _reports_batch(session, tasks[1:], per_task=2))
    for channel in {*EventChannel.objects.values_list("channel", flat=True)}:
        rows = list(
            EventChannel.objects.filter(channel=channel)
            .order_by("event_id")
            .values_list("event_id", "prev")
        )
        assert [prev for _, prev in rows] == [0] + [seq for seq, _ in rows[:-1]], channel
    # What the rows hold is what the last report said; the counts followed.
    task = Task.objects.get(pk=tasks[2].pk)
    assert (task.status, task.progress, task.message) == ("running", 7.0, "step 1")
    assert {t.status for t in Task.objects.filter(pk__in=[tasks[0].pk, tasks[1].pk])} == {
        "completed"
    }
    session.refresh_from_db()
    assert (session.status, session.completed_tasks, session.total_tasks) == ("running", 2, 4)
    assert session.refresh_counts() is False  # what was kept is what the rows say
    last = Event.objects.filter(kind="progress.update", task_id=tasks[2].pk).latest("id")
    # Reported before the batch's last item completed a second task.
    assert last.data["progress"] == 7.0 and last.data["completed_tasks"] == 1
    told = Event.objects.filter(kind="session.update", session_id=session.pk).latest("id")
    assert told.data["completed_tasks"] == 2 and told.pk > last.pk
    assert last.owner_id == session.owner_id


def test_a_replay_writes_its_reports_in_statements_that_do_not_grow_with_them(monkeypatch):
    monkeypatch.setattr(eventfiles, "BATCH_SECONDS", 3600.0)

    def replayed(name: str, reports: int) -> int:
        lines = [{"event": "session.update", "session": name, "data": {"status": "running"}}]
        lines += [
            {"event": "task.update", "session": name, "task": f"t{n}", "data": {"name": f"t{n}"}}
            for n in range(5)
        ]
        lines += [
            {"event": "progress.update", "session": name, "task": f"t{n % 5}",
             "data": {"progress": n % 100, "message": f"at {n}"}}
            for n in range(reports)
        ]  # fmt: skip
        lines.append(
            {"event": "task.output", "session": name, "task": "t0", "data": {"chunk": "."}}
        )
        parsed = eventfiles.parse_lines(iter(json.dumps(line) for line in lines))
        with CaptureQueriesContext(connection) as queries:
            eventfiles.Replay(parsed, speed=0).run()
        session = Session.objects.get(external_id=name)
        kinds = Event.objects.filter(session_id=session.pk, kind="progress.update")
        assert kinds.count() == reports
        assert Task.objects.get(session=session, external_id="t3").message == f"at {reports - 2}"
        return len(queries)

    assert replayed("few", 20) == replayed("many", 400)


def test_a_batch_of_many_tasks_writes_every_kind_of_field_as_one_report_would():
    session, _ = services.create_session(name="fields")
    one, two, three = (services.create_task(session.pk, name=f"t{n}")[0] for n in range(3))
    services.update_task(three.pk, progress=1)
    _apply(
        session.pk,
        BatchIn(
            tasks=[
                {"id": one.pk, "status": "failed", "error": "boom", "result": {"k": [1, "ü"]}},
                {"id": two.pk, "details": {"rows": 3, "nested": {"a": None}}, "name": "renamed"},
                {"id": three.pk, "status": "completed", "stale_after": 30},
            ]
        ),
    )
    alone, _ = services.create_session(name="alone")
    twins = [services.create_task(alone.pk, name=f"t{n}")[0] for n in range(3)]
    services.update_task(twins[2].pk, progress=1)
    services.update_task(twins[0].pk, status="failed", error="boom", result={"k": [1, "ü"]})
    services.update_task(twins[1].pk, details={"rows": 3, "nested": {"a": None}}, name="renamed")
    services.update_task(twins[2].pk, status="completed", stale_after=30)
    columns = ("status", "progress", "message", "details", "result", "error", "name",
               "stale_after", "attempt", "cancel_requested")  # fmt: skip
    for batched, single in zip((one, two, three), twins, strict=True):
        batched, single = Task.objects.get(pk=batched.pk), Task.objects.get(pk=single.pk)
        assert [getattr(batched, c) for c in columns] == [getattr(single, c) for c in columns]
        assert (batched.started_at is None) == (single.started_at is None)
        assert (batched.finished_at is None) == (single.finished_at is None)
    assert Task.objects.get(pk=one.pk).finished_at is not None
    kinds = lambda s: list(  # noqa: E731
        Event.objects.filter(session_id=s.pk).order_by("id").values_list("kind", flat=True)
    )
    # The same events; a batch is one write, so its alert comes at its end.
    assert [k for k in kinds(session) if k != "system.alert"] == [
        k for k in kinds(alone) if k != "system.alert"
    ]
    assert kinds(session)[-1] == "system.alert" and kinds(alone).count("system.alert") == 1
    session.refresh_from_db()
    assert (session.completed_tasks, session.failed_tasks) == (1, 1)


async def test_a_large_batch_reaches_watchers_whole_and_in_order_in_a_few_messages(
    live, admin_token
):
    api = live.client(admin_token)
    session = await asyncio.to_thread(api.create_session, "watched batch")
    path = f"sessions/{session['id']}/tasks"
    tasks = [
        await asyncio.to_thread(api.request, "POST", path, {"name": f"t{n}", "status": "running"})
        for n in range(3)
    ]
    body = {
        "tasks": [{"id": t["id"], "progress": n % 100} for n in range(400) for t in tasks[:2]],
        "output": [{"task_id": tasks[2]["id"], "chunk": f"{n} "} for n in range(700)],
    }
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, f"session:{session['id']}")
        await wc.subscribe(ws, f"task:{tasks[2]['id']}")
        await wc.subscribe(ws, "tasks")
        answer = await asyncio.to_thread(
            api.request, "POST", f"sessions/{session['id']}/batch", body
        )
        last, before = await wc.recv_until(
            ws, lambda f: f.get("event") == "task.output" and f["data"]["chunk"] == "699 "
        )
        frames = [f for f in [*before, last] if f["type"] == "event"]
        await asyncio.sleep(0.5)
        frames += [f for f in await wc.drain(ws) if f["type"] == "event"]
    assert answer["tasks"] == 800 and answer["output"] == 700
    by_channel = {}
    for frame in frames:
        by_channel.setdefault(frame["channel"], []).append(frame)
    progress = [f["data"]["progress"] for f in by_channel[f"session:{session['id']}"]]
    assert progress == [n % 100 for n in range(400) for _ in range(2)]
    chunks = "".join(f["data"]["chunk"] for f in by_channel[f"task:{tasks[2]['id']}"])
    assert chunks == "".join(f"{n} " for n in range(700))
    assert len(by_channel["tasks"]) == 800
    stored = await sync_to_async(
        lambda: list(
            EventChannel.objects.filter(channel="tasks")
            .order_by("event_id")
            .values_list("event_id", flat=True)
        )
    )()
    assert [f["seq"] for f in by_channel["tasks"]] == stored[-800:]


def test_a_progress_batch_reads_few_columns_and_still_starts_a_pending_task_whole():
    session, _ = services.create_session(name="light")
    running = [
        services.create_task(session.pk, name=f"r{n}", status="running")[0] for n in range(3)
    ]
    waiting = services.create_task(session.pk, name="waiting", external_id="w-1")[0]

    def queries(tasks) -> int:
        batch = BatchIn(tasks=[{"id": t.pk, "progress": 10, "message": "m"} for t in tasks])
        with CaptureQueriesContext(connection) as captured:
            _apply(session.pk, batch)
        return len(captured)

    assert queries(running) == queries(running[:2])
    queries([waiting, *running])
    started = Event.objects.filter(kind="task.update", task_id=waiting.pk).latest("id").data
    assert started["status"] == "running" and started["name"] == "waiting"
    assert started["external_id"] == "w-1" and started["started_at"] is not None
    waiting = Task.objects.get(pk=waiting.pk)
    assert (waiting.name, waiting.status, waiting.progress) == ("waiting", "running", 10.0)
    assert waiting.created_at < waiting.started_at
    assert Task.objects.get(pk=running[2].pk).name == "r2"


def test_output_with_a_uid_is_stored_once_however_often_it_comes(http):
    session = post(http, "sessions", {"name": "retried"})[1]
    task = post(http, f"sessions/{session['id']}/tasks", {"name": "t"})[1]
    task_id = int(task["id"])
    items = [
        {"task_id": task_id, "chunk": "one ", "uid": "c1"},
        {"task_id": task_id, "status": "thinking", "uid": "s1"},
        {"task_id": task_id, "chunk": "one ", "uid": "c1"},  # twice in one batch
        {"task_id": task_id, "chunk": "no uid "},
    ]
    status, first = post(http, f"sessions/{session['id']}/batch", {"output": items})
    assert status == 200, first
    status, again = post(http, f"sessions/{session['id']}/batch", {"output": items})
    assert status == 200, again
    texts = [
        e.data.get("chunk", e.data.get("status"))
        for e in Event.objects.filter(task_id=task_id, kind="task.output").order_by("id")
    ]
    assert texts == ["one ", "thinking", "no uid ", "no uid "], texts
    # The single call: the same uid is answered the first seq, and stores nothing.
    status, single = post(http, f"tasks/{task_id}/output", {"chunk": "x", "uid": "c1"})
    assert status == 201 and single["seq"] == Event.objects.filter(kind="task.output").first().pk
    status, fresh = post(http, f"tasks/{task_id}/output", {"chunk": "x", "uid": "c2"})
    assert status == 201 and fresh["seq"] > single["seq"]
    assert Event.objects.filter(task_id=task_id, kind="task.output").count() == 5
    status, bad = post(http, f"tasks/{task_id}/output", {"chunk": "x", "uid": ""})
    assert status == 400 and "uid" in bad["errors"], bad


def test_a_progress_only_batch_records_and_stores_what_single_reports_would():
    """The light path (the tasks loaded as rows, not models) against the
    single report, on twins: the same rows, the same event data, and a
    task.output on a light task carries its attempt."""

    def twins(name: str) -> tuple[Session, list[Task]]:
        session, _ = services.create_session(name=name)
        tasks = [
            services.create_task(session.pk, name=f"t{n}", status="running")[0] for n in range(3)
        ]
        services.update_task(tasks[0].pk, message="ünïcode", details={"rows": [1, {"a": None}]})
        services.update_task(tasks[2].pk, status="completed")  # counts in the data
        return session, tasks

    reports = [(0, {"progress": 12.5}), (1, {"progress": 50, "message": "half"}),
               (0, {"progress": 99.25, "details": {"k": "v"}}), (1, {"message": "m2"})]  # fmt: skip
    batched, tasks = twins("batched")
    before, started = Event.objects.count(), timezone.now()
    _apply(batched.pk, BatchIn(tasks=[{"id": tasks[n].pk, **r} for n, r in reports],
                               output=[{"task_id": tasks[1].pk, "chunk": "c"}]))  # fmt: skip
    single, singles = twins("single")
    for n, report in reports:
        services.update_task(singles[n].pk, **report)

    def recorded(session: Session) -> list[tuple]:
        rows = Event.objects.filter(session_id=session.pk, kind="progress.update")
        ids = {
            str(t.pk): n for n, t in enumerate(Task.objects.filter(session=session).order_by("id"))
        }
        return [
            (ids[e.data.pop("task_id")], e.data.pop("session_id") == str(session.pk), e.data)
            for e in rows.order_by("id")
        ][-len(reports) :]

    assert recorded(batched) == recorded(single)
    assert all(isinstance(data["details"], dict) for _, _, data in recorded(batched))
    columns = ("status", "progress", "message", "details", "name", "attempt")
    for one, twin in zip(tasks, singles, strict=True):
        one, twin = Task.objects.get(pk=one.pk), Task.objects.get(pk=twin.pk)
        assert [getattr(one, c) for c in columns] == [getattr(twin, c) for c in columns]
        assert one.updated_at > started or one.pk == tasks[2].pk
    chunk = Event.objects.filter(pk__gt=before, kind="task.output").get()
    assert chunk.data == {"task_id": str(tasks[1].pk), "chunk": "c", "final": False, "attempt": 1}

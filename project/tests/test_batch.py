"""Many reports in one request: the batch endpoint (one transaction, all or
nothing) and the client's Reporter that coalesces a chatty worker."""

import time

import pytest
from django.test import Client as DjangoClient
from switchboard_client import Client, Reporter

from conftest import free_port, post
from live.models import Event

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

"""Calls ride through a server that is away, and a retry writes nothing twice."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from switchboard_client import Client, Reporter, SwitchboardError

from conftest import free_port
from live.models import Event
from logs_app.models import LogEntry
from sessions_app.models import Session, Task
from tests.proxy import Proxy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def proxy(live):
    """A proxy in front of the module's server, failing requests as told."""
    front = Proxy(free_port(), live.port)
    yield front
    front.close()


def test_calls_made_while_the_server_restarts_go_through_once_it_is_back(fresh_server, admin_token):
    srv = fresh_server()
    api = Client(srv.url, admin_token, timeout=5)
    session = api.create_session("restarted")
    task = api.create_task(session["id"], "work", external_id="work-1")
    srv.kill()
    calls = {
        "create_task": lambda: api.create_task(session["id"], "second"),
        "create_session": lambda: api.create_session("made during the restart"),
        "update_task": lambda: api.update_task(task["id"], status="running"),
        "progress": lambda: api.progress(task["id"], 40, message="halfway"),
        "output": lambda: api.output(task["id"], "some output"),
        "status": lambda: api.status(task["id"], "thinking"),
        "log": lambda: api.log(session["id"], [{"message": "during the restart"}]),
        "update_session": lambda: api.update_session(session["id"], metadata={"k": 1}),
    }
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {name: pool.submit(call) for name, call in calls.items()}
        time.sleep(1.5)  # every call has failed at least once by now
        assert not any(future.done() for future in futures.values())
        srv.start()
        results = {name: future.result(timeout=60) for name, future in futures.items()}
    assert results["progress"]["progress"] == 40
    assert Task.objects.filter(session_id=session["id"]).count() == 2
    assert Session.objects.filter(name="made during the restart").count() == 1
    assert Session.objects.get(pk=session["id"]).metadata == {"k": 1}
    messages = LogEntry.objects.filter(session_id=session["id"]).values_list("message", flat=True)
    assert list(messages) == ["during the restart"]
    outputs = Event.objects.filter(task_id=task["id"], kind="task.output")
    assert sorted("chunk" in e.data for e in outputs) == [False, True]


def test_a_retry_after_a_lost_answer_writes_nothing_twice(proxy, admin_token):
    api = Client(proxy.url, admin_token, timeout=5)
    proxy.plan = ["lose"]  # stored by the server, its answer never heard
    session = api.create_session("once")
    assert Session.objects.filter(name="once").count() == 1
    assert Session.objects.get(name="once").external_id == session["external_id"]
    proxy.plan = ["lose"]
    task = api.create_task(session["id"], "once too")
    assert list(Task.objects.filter(session_id=session["id"]).values_list("pk", flat=True)) == [
        int(task["id"])
    ]
    proxy.plan = ["lose"]
    api.log(session["id"], [{"message": "one"}, {"message": "two", "level": "ERROR"}])
    messages = LogEntry.objects.filter(session_id=session["id"]).order_by("id")
    assert list(messages.values_list("message", flat=True)) == ["one", "two"]
    # Output chunks and steps carry a uid: stored once, answered the first seq.
    proxy.plan = ["lose"]
    first = api.output(task["id"], "a chunk ")
    proxy.plan = ["lose"]
    api.status(task["id"], "thinking", "hm")
    outputs = Event.objects.filter(task_id=task["id"], kind="task.output").order_by("id")
    assert [e.data.get("chunk", e.data.get("status")) for e in outputs] == ["a chunk ", "thinking"]
    assert first["seq"] == outputs[0].pk
    # And a Reporter's batch, tried again after a lost answer, adds none twice.
    reporter = Reporter(api, session["id"], interval=0.05)
    proxy.plan = ["lose"]
    reporter.output(task["id"], "batched ")
    reporter.status(task["id"], "tool_calling", tool="search")
    assert reporter.flush(timeout=20)
    reporter.close()
    outputs = Event.objects.filter(task_id=task["id"], kind="task.output").order_by("id")
    texts = [e.data.get("chunk", e.data.get("status")) for e in outputs]
    assert texts == ["a chunk ", "thinking", "batched ", "tool_calling"], texts
    posts = [line for line in proxy.seen if line.startswith("POST")]
    assert len(posts) == 12, proxy.seen  # each asked twice


def test_throttled_and_unavailable_answers_are_waited_out_and_retry_after_honoured(
    proxy, admin_token
):
    api = Client(proxy.url, admin_token, timeout=5)
    session = api.create_session("patient")
    task = api.create_task(session["id"], "steps")
    proxy.plan = ["429:1", "503", "502", "504", "408"]
    started = time.monotonic()
    assert api.progress(task["id"], 10)["progress"] == 10
    assert time.monotonic() - started >= 1.0  # not before the Retry-After
    assert len(proxy.seen) == 2 + 6


def test_other_answers_are_not_tried_again(proxy, admin_token):
    api = Client(proxy.url, admin_token, timeout=5)
    session = api.create_session("refused")
    for call, status in (
        (lambda: api.get_task(999999), 404),
        (lambda: api.update_session(session["id"], status="lost"), 400),
        (lambda: Client(proxy.url, "sb_nobody").get_session(session["id"]), 401),
    ):
        asked = len(proxy.seen)
        with pytest.raises(SwitchboardError) as refused:
            call()
        assert refused.value.status == status and refused.value.tries == 1
        assert len(proxy.seen) == asked + 1
    proxy.plan = ["500"]
    with pytest.raises(SwitchboardError) as broken:
        api.get_session(session["id"])
    assert broken.value.status == 500 and len(proxy.seen) == 5


def test_a_call_gives_up_after_the_time_its_caller_chose(db, admin_token):
    down = f"http://127.0.0.1:{free_port()}"
    api = Client(down, admin_token, timeout=1, retry_for=1.5)
    started = time.monotonic()
    with pytest.raises(SwitchboardError) as away:
        api.progress(1, 10)
    assert time.monotonic() - started >= 1.5
    assert away.value.status == 0 and away.value.tries > 2
    assert "cannot reach" in str(away.value) and "gave up after" in str(away.value)
    # Per call: once, at once.
    with pytest.raises(SwitchboardError) as once:
        Client(down, admin_token, timeout=1).get_session(1, retry_for=0)
    assert once.value.tries == 1 and "gave up" not in str(once.value)


def test_a_retry_after_past_the_callers_time_raises_at_once(proxy, admin_token):
    api = Client(proxy.url, admin_token, timeout=5, retry_for=5)
    proxy.plan = ["429:30"]
    with pytest.raises(SwitchboardError) as throttled:
        api.request("GET", "sessions")
    assert throttled.value.status == 429 and throttled.value.retry_after == 30
    assert len(proxy.seen) == 1


def test_the_older_throttle_wait_is_retry_for():
    assert Client("http://127.0.0.1:1", "t", throttle_wait=0).retry_for == 0
    assert Client("http://127.0.0.1:1", "t").retry_for == 60
    assert Client("http://127.0.0.1:1", "t", 5, 7, retry_for=3).retry_for == 3

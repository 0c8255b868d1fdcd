"""The worker client against a real server: batching, outages, retries, close()."""

import logging
import time

import pytest
from switchboard_client import Client, LogHandler, Reporter, SwitchboardError

from conftest import free_port
from live.models import Event
from logs_app.models import LogEntry

pytestmark = pytest.mark.timeout(120)


def test_the_client_creates_reports_and_reads(live, admin_token):
    api = live.client(admin_token)
    session = api.create_session("job", {"k": "v"}, external_id="c-1")
    assert api.create_session("job", external_id="c-1")["id"] == session["id"]
    task = api.create_task(session["id"], "step")
    assert api.progress(task["id"], 12.5, "working")["progress"] == 12.5
    assert api.output(task["id"], "chunk")["seq"] > 0
    api.log(session["id"], [{"message": "hello"}])
    assert [e["message"] for e in api.logs(session["id"])["entries"]] == ["hello"]
    with pytest.raises(SwitchboardError) as error:
        api.update_task(task["id"], progress=500)
    assert error.value.status == 400 and "progress" in error.value.body["errors"]


def test_the_log_handler_batches_records_into_few_requests(live, admin_token):
    api = live.client(admin_token)
    session = api.create_session("logging")
    handler = LogHandler(live.url, admin_token, session["id"], interval=0.5)
    logger = logging.getLogger("client-test.batch")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for n in range(300):
        logger.info("line %d", n)
    try:
        raise ValueError("bad value")
    except ValueError:
        logger.exception("it broke")
    odd = object()
    logger.warning("with fields", extra={"user": 7, "tags": ["a"], "odd": odd})
    assert handler.flush(10)
    handler.close()
    entries = list(LogEntry.objects.order_by("id"))
    messages = [e.message for e in entries]
    assert messages[:300] == [f"line {n}" for n in range(300)]
    assert (
        messages[300].startswith("it broke\nTraceback") and "ValueError: bad value" in messages[300]
    )
    # A record's extra fields go along (what JSON cannot hold, as its repr); others have none.
    assert entries[301].extra == {"user": 7, "tags": ["a"], "odd": repr(odd)}
    assert entries[0].extra is None
    assert Event.objects.filter(kind="log.append").count() <= 3


def test_the_log_handler_survives_an_outage_and_stores_nothing_twice(fresh_server, admin_token):
    port = free_port()
    srv = fresh_server(port=port)
    session = srv.client(admin_token).create_session("outage")
    handler = LogHandler(srv.url, admin_token, session["id"], interval=0.2, timeout=2)
    logger = logging.getLogger("client-test.outage")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("before")
    assert handler.flush(10)
    srv.kill()
    started = time.monotonic()
    for n in range(50):
        logger.warning("during %d", n)
    assert time.monotonic() - started < 0.5, "logging never waits for the server"
    time.sleep(1.5)  # the handler is retrying now
    assert handler.failures > 0
    srv.start()
    assert handler.flush(45)
    handler.close()
    messages = list(LogEntry.objects.order_by("id").values_list("message", flat=True))
    assert messages == ["before"] + [f"during {n}" for n in range(50)]


def test_close_returns_within_ten_seconds_when_the_server_is_down(db, admin_token):
    handler = LogHandler(f"http://127.0.0.1:{free_port()}", admin_token, 1, timeout=30)
    logger = logging.getLogger("client-test.down")
    logger.addHandler(handler)
    logger.propagate = False
    for n in range(100):
        logger.error("lost %d", n)
    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 10
    with pytest.raises(SwitchboardError) as error:
        Client(f"http://127.0.0.1:{free_port()}", admin_token, timeout=1, retry_for=0).get_session(
            1
        )
    assert error.value.status == 0


def test_the_reporter_drops_only_the_item_the_server_refuses_and_says_so(live, admin_token):
    api = live.client(admin_token)
    session = api.create_session("refusals")
    task = api.create_task(session["id"], "work")
    with Reporter(api, session["id"], interval=0.2) as report:
        report.log("first", task_id=task["id"])
        report.log("odd", level="LOUD", task_id=task["id"])  # no such level: refused
        report.log("third", task_id=task["id"])
        report.output(task["id"], "all of the output", final=True)
    assert report.losses() == [
        "refused by the server and dropped: 1 log lines (logs.1.level: "
        + report._why["log lines", "refused by the server and dropped"].split(": ", 1)[1]
        + ")"
    ]
    assert api.request("GET", f"tasks/{task['id']}/output")["text"] == "all of the output"
    entries = LogEntry.objects.filter(session_id=session["id"]).order_by("id")
    assert [(e.level, e.message.split(" (")[0]) for e in entries] == [
        (20, "first"),
        (20, "third"),
        (40, "switchboard: refused by the server and dropped: 1 log lines"),
    ]
    assert "logs.1.level" in entries[2].message


def test_the_reporter_cuts_what_it_holds_to_the_servers_body_limit(fresh_server, admin_token):
    srv = fresh_server(SWITCHBOARD_MAX_BODY_BYTES="65536")
    api = srv.client(admin_token)
    session = api.create_session("big")
    task = api.create_task(session["id"], "long")
    text = "".join(f"{n} \u00e9t\u00e9 \U0001f600\n" for n in range(40000))  # escaped in JSON
    long_line = "y" * 200_000
    with Reporter(api, session["id"], interval=0.2) as report:
        report.output(task["id"], text)
        report.log(long_line)
        report.status(task["id"], "thinking", note="z" * 30_000)
        report.output(task["id"], "end", final=True)
    assert report.losses() == []
    events = [
        e.data for e in Event.objects.filter(task_id=task["id"], kind="task.output").order_by("id")
    ]
    assert "".join(e.get("chunk", "") for e in events) == text + "end"
    assert events[-1]["final"] is True and len(events) > 10
    assert [e["data"]["note"] for e in events if "status" in e] == ["z" * 30_000]
    # The line too long for a request is stored in parts, in order.
    parts = LogEntry.objects.filter(session_id=session["id"]).order_by("id")
    assert "".join(p.message for p in parts) == long_line and len(parts) > 1


def test_nul_and_lone_surrogates_are_stored_as_replacement_characters(live, admin_token):
    api = live.client(admin_token)
    session = api.create_session("unstorable")
    task = api.create_task(session["id"], "t")
    decoded = b"caf\xe9".decode("utf-8", errors="surrogateescape")
    with Reporter(api, session["id"]) as report:
        report.output(task["id"], "a\x00b " + decoded, final=True)
        report.log("nul\x00here", where=decoded)
        report.progress(task["id"], 10, message="m\x00")
    assert report.losses() == []
    handler = LogHandler(live.url, admin_token, session["id"])
    logger = logging.getLogger("client-test.unstorable")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("from logging \x00 %s", decoded)
    handler.close()
    assert handler.lost == {}
    assert api.request("GET", f"tasks/{task['id']}/output")["text"] == "a\ufffdb caf\ufffd"
    assert api.get_task(task["id"])["message"] == "m\ufffd"
    entries = list(LogEntry.objects.filter(session_id=session["id"]).order_by("id"))
    assert [(e.message, e.extra) for e in entries] == [
        ("nul\ufffdhere", {"where": "caf\ufffd"}),
        ("from logging \ufffd caf\ufffd", None),
    ]


def test_the_log_handler_drops_only_the_refused_line_and_says_so(live, admin_token, capfd):
    session = live.client(admin_token).create_session("handler refusals")
    handler = LogHandler(live.url, admin_token, session["id"], interval=0.2)
    logger = logging.getLogger("client-test.refused")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("one")
    logger.warning("two", extra={"ratio": float("nan")})  # JSON the server cannot store
    logger.warning("three")
    assert handler.flush(10)
    handler.close()
    messages = list(
        LogEntry.objects.filter(session_id=session["id"])
        .order_by("id")
        .values_list("message", flat=True)
    )
    assert messages[:2] == ["one", "three"] and len(messages) == 3
    assert messages[2].startswith("switchboard: refused by the server and dropped: 1 log lines")
    assert "entries.1.extra" in messages[2]
    err = capfd.readouterr().err
    assert err.count("switchboard_client: refused by the server and dropped: 1 log lines") == 1


def test_the_log_handler_cuts_its_batches_to_the_servers_body_limit(fresh_server, admin_token):
    srv = fresh_server(SWITCHBOARD_MAX_BODY_BYTES="65536")
    session = srv.client(admin_token).create_session("handler big")
    handler = LogHandler(srv.url, admin_token, session["id"], interval=0.2)
    logger = logging.getLogger("client-test.big")
    logger.addHandler(handler)
    logger.propagate = False
    for n in range(2000):
        logger.warning("line %d %s", n, "x" * 200)
    assert handler.flush(20)
    handler.close()
    assert handler.lost == {}
    messages = list(
        LogEntry.objects.filter(session_id=session["id"])
        .order_by("id")
        .values_list("message", flat=True)
    )
    assert messages == [f"line {n} {'x' * 200}" for n in range(2000)]


def test_the_log_handler_keeps_its_lines_while_the_token_is_refused_and_says_so_once(
    live, worker_user, worker_token, capfd
):
    session = live.client(worker_token).create_session("refused for a while")
    handler = LogHandler(live.url, worker_token, session["id"], interval=0.2)
    logger = logging.getLogger("client-test.token")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("accepted")
    assert handler.flush(10)
    worker_user.is_active = False
    worker_user.save()  # a model save: every server process hears of it
    for n in range(20):
        logger.warning("held %d", n)
    deadline = time.monotonic() + 10
    while handler.failures < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert handler.failures >= 3 and handler.refused.status == 401
    err = capfd.readouterr().err
    assert err.count("switchboard_client: the server refused the token (401") == 1, err
    assert "are kept" in err
    worker_user.is_active = True
    worker_user.save()
    assert handler.flush(30)
    handler.close()
    assert handler.lost == {} and handler.refused is None
    messages = LogEntry.objects.filter(session_id=session["id"]).order_by("id")
    assert list(messages.values_list("message", flat=True)) == ["accepted"] + [
        f"held {n}" for n in range(20)
    ]
    assert "refused" not in capfd.readouterr().err

"""The worker client against a real server: batching, outages, retries, close()."""

import logging
import time

import pytest
from switchboard_client import Client, LogHandler, SwitchboardError

from conftest import free_port
from logs_app.models import LogEntry
from sessions_app.models import Event

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
        Client(f"http://127.0.0.1:{free_port()}", admin_token, timeout=1).get_session(1)
    assert error.value.status == 0

"""What a Celery run records of its call for Retry (switchboard_client.celery_calls):
the edges, on a stand-in for the task (the worker tests cover the real one)."""

import datetime
import uuid
from types import SimpleNamespace

import pytest
from kombu.utils.json import dumps, loads
from switchboard_client.celery_calls import MOST, call_of, check_record_arguments, resent_id


def task(**request):
    fields = {"id": "c1", "root_id": "c1", "parent_id": None, "delivery_info": {}, **request}
    return SimpleNamespace(name="app.job", request=SimpleNamespace(**fields))


def test_dates_and_uuids_are_kept_as_celerys_json_writes_them_and_read_back_alike():
    when, key = datetime.datetime(2026, 1, 2, 3, 4, 5), uuid.uuid4()
    call = call_of(task(), (when,), {"key": key}, True)
    assert call["sendable"] is True
    assert loads(dumps([call["args"], call["kwargs"]])) == [[when], {"key": key}]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ((float("nan"),), "arguments not JSON (ValueError)"),
        ((object(),), "arguments not JSON (TypeError)"),
        (("\ud800",), "arguments not JSON (UnicodeEncodeError)"),
        (("a\x00b",), "arguments hold a NUL character"),
        (("x" * MOST,), f"arguments over {MOST} bytes of JSON"),
    ],
)
def test_arguments_that_cannot_be_kept_leave_the_run_not_sendable(args, why):
    call = call_of(task(), args, {}, True)
    assert (call["sendable"], call["args"], call["kwargs"], call["why"]) == (False, None, None, why)


def test_just_under_the_limit_is_kept():
    text = "x" * (MOST - len('{"args": [""], "kwargs": {}}'))
    assert call_of(task(), (text,), {}, True)["args"] == [text]


def test_record_arguments_false_keeps_none_and_args_keeps_the_positional_ones():
    assert call_of(task(), (1,), {"secret": 2}, False)["why"].endswith("record_arguments=False)")
    call = call_of(task(), (1,), {"secret": 2}, "args")
    assert (call["args"], call["kwargs"], call["kwargs_kept_out"]) == ([1], None, True)
    for bad in ("kwargs", 1, 0, None):
        with pytest.raises(ValueError, match="record_arguments"):
            check_record_arguments(bad)


def test_the_routing_and_the_servers_header_are_read_from_the_request():
    call = call_of(task(delivery_info={"exchange": "ex", "routing_key": "q"}), (), {}, True)
    assert (call["exchange"], call["routing_key"]) == ("ex", "q")
    assert resent_id(SimpleNamespace(headers={"switchboard_task_id": 42})) == "42"
    assert resent_id(SimpleNamespace(headers=None, switchboard_task_id="7")) == "7"
    assert resent_id(SimpleNamespace(headers={})) is None

"""Client frames parsed into typed frames, without a socket: each refusal names its field."""

import pytest

from live import protocol
from live.errors import Refused
from live.protocol import parse_action, parse_json

pytestmark = pytest.mark.django_db  # the app configs register the features' actions


def refused(raw) -> Refused:
    with pytest.raises(Refused) as caught:
        parse_action(raw)
    return caught.value


def test_each_action_parses_into_its_own_model():
    assert parse_action({"action": "ping", "ts": 5}) == protocol.Ping(action="ping", ts=5)
    subscribe = parse_action({"action": "subscribe", "channel": "sessions", "since": "12"})
    assert isinstance(subscribe, protocol.Subscribe)
    assert (subscribe.channel, subscribe.since, subscribe.filter) == ("sessions", 12, None)
    assert parse_action({"action": "unsubscribe", "channel": "x", "extra": 1}).channel == "x"
    cancel = parse_action({"action": "cancel_task", "task_id": 7.0})
    assert type(cancel).__name__ == "CancelTask" and cancel.task_id == 7


@pytest.mark.parametrize(
    "raw, field",
    [
        ({}, "action"),
        ({"action": ""}, "action"),
        ({"action": 3}, "action"),
        ({"action": "dance"}, "action"),
        ({"action": "subscribe"}, "channel"),
        ({"action": "subscribe", "channel": ""}, "channel"),
        ({"action": "subscribe", "channel": 4}, "channel"),
        ({"action": "subscribe", "channel": "sessions", "since": 1.5}, "since"),
        ({"action": "subscribe", "channel": "sessions", "since": -1}, "since"),
        ({"action": "subscribe", "channel": "sessions", "since": True}, "since"),
        ({"action": "subscribe", "channel": "sessions", "since": "2" * 20}, "since"),
        ({"action": "unsubscribe", "channel": None}, "channel"),
        ({"action": "ping", "ts": "t" * 257}, "ts"),
        ({"action": "ping", "ts": {"a": 1}}, "ts"),
        ({"action": "cancel_task", "task_id": 1.5}, "task_id"),
        ({"action": "cancel_task", "task_id": "abc"}, "task_id"),
    ],
)
def test_a_bad_field_is_refused_by_name(raw, field):
    error = refused(raw)
    assert (error.frame_code, error.field) == ("invalid_action", field), error.message
    assert error.message


def test_the_messages_say_what_is_wrong():
    assert refused({"action": "subscribe"}).message == "subscribe needs a channel"
    assert "whole number" in refused({"action": "subscribe", "channel": "x", "since": 1.5}).message
    assert "known: " in refused({"action": "dance"}).message


def test_an_id_that_cannot_be_echoed_is_refused_with_none_to_echo():
    assert protocol.frame_id({"id": "a" * 256}) == "a" * 256
    for bad in (True, [1], {"a": 1}, "a" * 257):
        with pytest.raises(Refused) as caught:
            protocol.frame_id({"id": bad})
        assert caught.value.field == "id"


@pytest.mark.parametrize(
    "text", [None, "[1]", "{", "NaN", '{"x": 1e999}', '{"x": "\\ud800"}', "[" * 100000]
)
def test_text_that_is_not_a_json_object_is_invalid_json(text):
    with pytest.raises(Refused) as caught:
        parse_json(text)
    assert caught.value.frame_code == "invalid_json"


def test_replies_echo_the_id_right_after_the_type():
    body = protocol.reply(7, protocol.unsubscribed("sessions", True))
    assert list(body) == ["type", "id", "channel", "was_subscribed"] and body["id"] == 7
    assert protocol.reply(None, protocol.pong(1)) == {"type": "pong", "ts": 1}
    error = protocol.error(Refused("no", code="forbidden", field="channel"), available=[1])
    assert error == {
        "type": "error",
        "code": "forbidden",
        "message": "no",
        "field": "channel",
        "available": [1],
    }

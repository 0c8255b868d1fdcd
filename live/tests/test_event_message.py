"""One layer message per event, whatever the channels it is on."""

import json

import pytest
from django.db import transaction

from live import events
from live.publisher import publisher

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_event_on_three_channels_is_one_message_with_each_channels_frame(monkeypatch):
    sent = []
    monkeypatch.setattr(publisher, "publish", sent.append)
    channels = ["tasks", "session:7", "task:9"]
    with transaction.atomic():
        first = events.record("task.update", ["task:9"], session_id=1, data={"n": 0})
        event = events.record(
            "task.update", channels, session_id=1, data={"é": "ü"}, extras={"owner_id": 3}
        )

    assert [len(messages) for messages in sent] == [1, 1]
    ((group, message),) = sent[1]
    assert group == events.EVENTS_GROUP
    assert message["seq"] == event.id
    assert message["places"] == {"tasks": 0, "session:7": 0, "task:9": first.id}
    for channel, prev in message["places"].items():
        relayed = events.on_channel(message, channel, prev)
        frame = events.event_frame(
            channel, "task.update", event.id, event.ts.isoformat(), {"é": "ü"}
        )
        assert relayed["frame"] == events.dumps(frame)
        assert json.loads(relayed["frame"]) == frame
        assert (relayed["channel"], relayed["seq"], relayed["prev"]) == (channel, event.id, prev)
        assert relayed["owner_id"] == 3 and "places" not in relayed and "rest" not in relayed


def test_the_events_of_one_write_go_out_packed_in_order_within_the_bounds(monkeypatch):
    sent = []
    monkeypatch.setattr(publisher, "publish", sent.append)
    with transaction.atomic():
        pending = events.Pending()
        for n in range(events.PACK_EVENTS * 2 + 10):
            pending.add("task.output", ["task:9"], 1, 9, {"chunk": str(n)}, None, None, None)
        big = "x" * (events.PACK_CHARS // 2)
        for _ in range(3):  # big ones: two would overflow a message
            pending.add("task.output", ["task:9"], 1, 9, {"chunk": big}, None, None, None)
        stored = pending.store()
    ((*messages,),) = sent
    kinds = [message["type"] for _, message in messages]
    assert kinds == ["sb.events"] * 3 + ["sb.event"] * 2  # 500, 500, 10 and a big one, ...

    unpacked = [m for _, message in messages for m in message.get("events", [message])]
    assert [m["seq"] for m in unpacked] == [event.id for event in stored]
    assert [m["places"]["task:9"] for m in unpacked][1:] == [e.id for e in stored][:-1]
    for _, message in messages:
        inner = message.get("events", [message])
        assert len(inner) <= events.PACK_EVENTS
        assert len(inner) == 1 or sum(len(m["rest"]) for m in inner) <= events.PACK_CHARS

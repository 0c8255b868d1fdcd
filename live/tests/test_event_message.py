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

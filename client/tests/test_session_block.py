"""`with sb.session(...) as s:` ends the session as its block ends."""

import sys

import pytest

from logs_app.models import LogEntry
from sessions_app.models import Session

pytestmark = pytest.mark.timeout(60)


def test_a_block_that_ends_cleanly_completes_its_session(live, admin_token):
    api = live.client(admin_token)
    with api.session("nightly import", metadata={"rows": 3}) as s:
        assert s["name"] == "nightly import" and s["metadata"] == {"rows": 3}
        assert Session.objects.get(pk=s["id"]).status == "running"
        task = api.create_task(s["id"], "load")
        api.update_task(task["id"], status="completed")
    session = Session.objects.get(pk=s["id"])
    assert session.status == "completed" and session.finished_at is not None
    assert not LogEntry.objects.filter(session=session).exists()


def test_a_block_that_raises_fails_its_session_logs_the_traceback_and_raises_on(live, admin_token):
    api = live.client(admin_token)

    def load():
        raise ValueError("row 7 is bad")

    with pytest.raises(ValueError, match="row 7 is bad"), api.session("breaks") as s:
        load()
    session = Session.objects.get(pk=s["id"])
    assert session.status == "failed"
    [line] = LogEntry.objects.filter(session=session)
    assert line.level == 40
    first, rest = line.message.split("\n", 1)
    assert first == "the session's block raised ValueError: row 7 is bad"
    assert rest.startswith("Traceback (most recent call last):")
    assert "in load" in rest and rest.rstrip().endswith("ValueError: row 7 is bad")


def test_sys_exit_zero_completes_and_another_status_fails(live, admin_token):
    api = live.client(admin_token)
    with pytest.raises(SystemExit), api.session("exits early") as early:
        sys.exit(0)
    with pytest.raises(SystemExit), api.session("exits badly") as badly:
        sys.exit(3)
    assert Session.objects.get(pk=early["id"]).status == "completed"
    assert Session.objects.get(pk=badly["id"]).status == "failed"


def test_a_session_cancelled_meanwhile_stays_cancelled(live, admin_token):
    api = live.client(admin_token)
    with api.session("stopped from the pages", external_id="block-1") as s:
        api.request("POST", f"sessions/{s['id']}/cancel")
    assert Session.objects.get(pk=s["id"]).status == "cancelled"
    assert s["external_id"] == "block-1"

"""A session's life follows its work: once all its tasks have ended and
nothing new has arrived for it for the settle time, it ends by itself, once,
with the status its tasks imply; a task added later does not reopen it."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from live.errors import Refused
from live.models import Event
from logs_app import services as log_services
from operations import settle
from sessions_app import services, settling
from sessions_app.models import Session, Status
from sessions_app.output import append_output

pytestmark = pytest.mark.django_db


def settle_after(seconds: int):
    return override_settings(SWITCHBOARD={**settings.SWITCHBOARD, "SESSION_SETTLE": seconds})


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def session_with(*outcomes: str, ended_ago: float = 60) -> Session:
    """A running session whose tasks ran and ended `ended_ago` seconds ago."""
    session, _ = services.create_session(name="work", status="running", ts=ago(ended_ago + 10))
    for n, outcome in enumerate(outcomes):
        task, _ = services.create_task(
            session.pk, name=f"t{n}", status="running", ts=ago(ended_ago + 5)
        )
        services.update_task(task.pk, progress=50, ts=ago(ended_ago + 2))
        if outcome != "running":
            services.update_task(task.pk, status=outcome, ts=ago(ended_ago))
    return session


def status_of(session: Session) -> str:
    return Session.objects.get(pk=session.pk).status


def session_updates(session: Session, status: str) -> int:
    return Event.objects.filter(
        session_id=session.pk, kind="session.update", data__status=status
    ).count()


def test_a_session_whose_tasks_all_completed_ends_completed_after_the_settle_time():
    session = session_with("completed", "completed", ended_ago=20)
    assert status_of(session) == "running"
    with settle_after(30):
        assert settle.sweep() == []
        assert status_of(session) == "running"
    with settle_after(10):
        assert settle.sweep() == [session.pk]
    ended = Session.objects.get(pk=session.pk)
    assert ended.status == "completed" and ended.finished_at is not None
    # Its session.update is stored (and so published) like any other.
    assert session_updates(session, "completed") == 1


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        (("completed", "cancelled", "failed"), "failed"),
        (("failed", "completed"), "failed"),
        (("cancelled", "completed"), "cancelled"),
        (("completed",), "completed"),
    ],
)
def test_failed_wins_over_cancelled_over_completed(outcomes, status):
    session = session_with(*outcomes)
    with settle_after(30):
        assert settle.sweep() == [session.pk]
    assert status_of(session) == status
    assert settling.end_status(outcomes) == status


def test_a_task_failed_as_lost_ends_its_session_failed():
    session = session_with("running")
    task = session.tasks.get()
    with override_settings(SWITCHBOARD={**settings.SWITCHBOARD, "STALE_AFTER": 10}):
        assert services.fail_lost(task.pk, lambda t: ago(60), 10)
    # Failed just now: the session waits for the settle time from then.
    with settle_after(30):
        assert settle.sweep() == []
    Event.objects.filter(session_id=session.pk).update(ts=ago(60))
    session.tasks.update(updated_at=ago(60))
    Session.objects.filter(pk=session.pk).update(updated_at=ago(60))
    with settle_after(30):
        assert settle.sweep() == [session.pk]
    assert status_of(session) == "failed"


def test_a_session_with_a_task_still_running_or_pending_does_not_end():
    running = session_with("completed", "running")
    pending = session_with("completed")
    services.create_task(pending.pk, name="later", ts=ago(50))
    with settle_after(5):
        assert settle.sweep() == []
    assert status_of(running) == status_of(pending) == "running"


def test_a_session_without_tasks_or_paused_or_ended_is_left_alone():
    empty, _ = services.create_session(name="empty", status="running", ts=ago(600))
    paused = session_with("completed")
    services.update_session(paused.pk, status="paused", ts=ago(60))
    cancelled = session_with("completed")
    services.update_session(cancelled.pk, status="cancelled", ts=ago(60))
    with settle_after(5):
        assert settle.sweep() == []
    assert (status_of(empty), status_of(paused), status_of(cancelled)) == (
        "running",
        "paused",
        "cancelled",
    )


def test_a_session_that_got_a_new_task_during_the_settle_time_does_not_end():
    session = session_with("completed")
    # Ended at once, but new: the settle time starts again from it.
    services.create_task(session.pk, name="quick", status="completed")
    with settle_after(30):
        assert settle.sweep() == []
    assert status_of(session) == "running"


@pytest.mark.parametrize("report", ["progress", "output", "task log line", "session log line"])
def test_any_report_for_the_session_during_the_settle_time_keeps_it_open(report):
    session = session_with("completed")
    task = session.tasks.get()
    if report == "progress":
        services.update_task(task.pk, message="still tidying up")
    elif report == "output":
        append_output(task.pk, "a late line\n")
    else:
        entry = {"level": 20, "logger": "w", "message": "tidying", "ts": timezone.now()}
        if report == "task log line":
            entry["task_id"] = task.pk
        log_services.append_entries(session.pk, [entry])
    with settle_after(30):
        assert settle.sweep() == []
    assert status_of(session) == "running"


def test_the_decision_is_made_again_under_the_lock_and_ends_a_session_once():
    session = session_with("completed")
    # A look that found it settled, then a task created before the lock.
    services.create_task(session.pk, name="new", ts=ago(100))
    assert settling.end_if_settled(session.pk, settle.last_report, 30) is None
    assert status_of(session) == "running"
    session.tasks.filter(name="new").update(status="completed")
    assert settling.end_if_settled(session.pk, lambda s: ago(100), 30).status == "completed"
    # A second process that looked at the same time finds it ended.
    assert settling.end_if_settled(session.pk, lambda s: ago(100), 30) is None
    with settle_after(30):
        assert settle.sweep() == []
    assert session_updates(session, "completed") == 1


def test_a_settle_time_of_zero_turns_it_off():
    session = session_with("completed")
    with settle_after(0):
        assert settle.sweep() == []
    assert status_of(session) == "running"


def test_an_ended_session_keeps_its_status_whatever_its_tasks_do():
    session = session_with("completed", "running")
    task = session.tasks.get(status="running")
    services.cancel_session(session.pk)
    assert status_of(session) == "cancelled"
    # A task added later is taken, as it always was, and reopens nothing.
    late, created = services.create_task(session.pk, name="more")
    assert created and late.status == "pending"
    assert status_of(session) == "cancelled"
    # The running task was asked to stop; its worker says it did.
    assert services.update_task(task.pk, status="cancelled").status == "cancelled"
    assert status_of(session) == "cancelled"
    with pytest.raises(Refused) as refused:
        services.update_session(session.pk, status="running")
    assert refused.value.field == "status"


def test_a_failed_task_is_counted_on_its_session():
    session = session_with("failed", "completed")
    counted = Session.objects.get(pk=session.pk)
    assert (counted.total_tasks, counted.completed_tasks, counted.failed_tasks) == (2, 1, 1)
    assert counted.as_json()["failed_tasks"] == 1
    services.retry_task(session.tasks.get(status=Status.FAILED).pk)
    assert Session.objects.get(pk=session.pk).failed_tasks == 0


@pytest.mark.parametrize("raw", ["soon", "-1", "10000001"])
def test_a_bad_settle_time_is_refused_at_start_up(monkeypatch, raw):
    from django.core.exceptions import ImproperlyConfigured

    from project.env import env_int

    monkeypatch.setenv("SWITCHBOARD_SESSION_SETTLE", raw)
    with pytest.raises(ImproperlyConfigured, match="SWITCHBOARD_SESSION_SETTLE"):
        env_int("SWITCHBOARD_SESSION_SETTLE", 30, minimum=0, maximum=10_000_000)

"""Retry runs the work again: a real Celery worker (Redis as the broker) and a
real server given the broker; `POST /tasks/<id>/retry` sends the recorded
call again and the worker runs it as the next attempt of the same task."""

import json

import pytest
from switchboard_client import SwitchboardError

from client.tests.test_celery import BROKER, broker, ended, updates, wait, worker  # noqa: F401 (fixtures)
from logs_app.models import LogEntry
from sessions_app.models import Session, Task

pytestmark = pytest.mark.timeout(120)


def failed_once(api, celery, *args, **kwargs) -> dict:
    """sbtest.flag sent with these arguments, ended failed the first time."""
    sent = celery.send("sbtest.flag", *args, kwargs=kwargs)
    task = wait(lambda: ended(api, sent.id), 30, celery.logs)
    assert (task["status"], task["error"]) == ("failed", "RuntimeError: first time"), task
    return task


def attempt_two(api, celery, celery_id: str) -> dict:
    return wait(lambda: (t := ended(api, celery_id)) and t["attempt"] == 2 and t, 30, celery.logs)


def test_a_failed_task_retried_runs_again_on_the_worker_as_attempt_2_of_the_same_task(
    worker,  # noqa: F811
    admin_token,
    tmp_path,
):
    srv, celery = worker(SWITCHBOARD_CELERY_BROKER_URL=BROKER)
    api = srv.client(admin_token)
    flag = str(tmp_path / "flag")
    failed = failed_once(api, celery, flag, word="again")
    call = failed["details"]["celery"]
    assert call == {
        "name": "sbtest.flag",
        "id": failed["external_id"],
        "root_id": failed["external_id"],
        "parent_id": None,
        "exchange": call["exchange"],
        "routing_key": celery.queue,
        "args": [flag],
        "kwargs": {"word": "again"},
        "sendable": True,
    }

    retried = api.request("POST", f"tasks/{failed['id']}/retry", {})
    assert (retried["status"], retried["attempt"]) == ("pending", 2)
    assert retried["sent"] == {
        "sent": True,
        "to": "celery",
        "name": "sbtest.flag",
        "celery_id": failed["external_id"],
        "reason": None,
    }
    done = attempt_two(api, celery, failed["external_id"])
    assert (done["id"], done["status"], done["result"]) == (
        failed["id"],
        "completed",
        {"word": "again"},
    )
    assert Task.objects.filter(external_id=failed["external_id"]).count() == 1
    history = [(status, attempt) for status, attempt, _ in updates(done["id"])]
    assert history[history.index(("failed", 1)) :] == [
        ("failed", 1),
        ("pending", 2),
        ("running", 2),
        ("completed", 2),
    ]
    assert done["details"]["celery"]["args"] == [flag]  # recorded again by the second run
    (trace,) = LogEntry.objects.filter(session_id=done["session_id"], level=40)
    assert "RuntimeError: first time" in trace.message  # the first run's, and only it failed
    wait(lambda: Session.objects.get(pk=done["session_id"]).status == "completed", 20)


def test_a_task_recorded_without_its_kwargs_is_sent_again_with_its_args(
    worker,  # noqa: F811
    admin_token,
    tmp_path,
):
    srv, celery = worker(SWITCHBOARD_CELERY_BROKER_URL=BROKER, SB_RECORD="args")
    api = srv.client(admin_token)
    flag = str(tmp_path / "flag")
    failed = failed_once(api, celery, flag, word="hunter2")
    call = failed["details"]["celery"]
    assert (call["args"], call["kwargs"], call["kwargs_kept_out"]) == ([flag], None, True)
    assert "hunter2" not in json.dumps(failed)
    assert api.request("POST", f"tasks/{failed['id']}/retry", {})["sent"]["sent"] is True
    done = attempt_two(api, celery, failed["external_id"])
    assert (done["status"], done["result"]) == ("completed", {"word": "plain"})  # its default


def test_arguments_too_large_to_record_are_not_sent_and_the_retry_is_refused(
    worker,  # noqa: F811
    admin_token,
    tmp_path,
):
    srv, celery = worker(SWITCHBOARD_CELERY_BROKER_URL=BROKER)
    api = srv.client(admin_token)
    big = "x" * 20_000
    failed = failed_once(api, celery, str(tmp_path / "flag"), big)
    call = failed["details"]["celery"]
    assert (call["sendable"], call["args"], call["kwargs"]) == (False, None, None)
    assert call["why"] == "arguments over 16384 bytes of JSON"
    assert big not in json.dumps(failed)
    with pytest.raises(SwitchboardError) as refused:
        api.request("POST", f"tasks/{failed['id']}/retry", {})
    assert refused.value.status == 409
    message = refused.value.body["errors"]["details.celery"][0]
    assert "cannot be sent again: arguments over 16384 bytes of JSON" in message
    assert Task.objects.get(pk=failed["id"]).attempt == 1  # nothing changed

    only = api.request("POST", f"tasks/{failed['id']}/retry", {"send": False})
    assert (only["status"], only["attempt"]) == ("pending", 2)
    assert only["sent"]["sent"] is False and only["sent"]["reason"] == "not asked to (send: false)"


def test_without_a_broker_a_retry_records_the_attempt_and_sends_nothing(
    worker,  # noqa: F811
    admin_token,
    tmp_path,
):
    srv, celery = worker()
    api = srv.client(admin_token)
    failed = failed_once(api, celery, str(tmp_path / "flag"))
    retried = api.request("POST", f"tasks/{failed['id']}/retry", {})
    assert (retried["status"], retried["attempt"]) == ("pending", 2)
    assert retried["sent"] == {
        "sent": False,
        "to": "celery",
        "name": "sbtest.flag",
        "celery_id": failed["external_id"],
        "reason": "SWITCHBOARD_CELERY_BROKER_URL is not set",
    }
    marker = celery.send("sbtest.add", 1)  # the queue is worked in order: it would have run
    wait(lambda: ended(api, marker.id), 30, celery.logs)
    task = Task.objects.get(pk=failed["id"])
    assert (task.status, task.attempt) == ("pending", 2)
    assert ("running", 2) not in [(s, a) for s, a, _ in updates(task.pk)]

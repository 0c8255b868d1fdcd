"""Pause and resume through the API, and the actor (`by`) of every action in
its events, through Django's test client with real transactions."""

import pytest

from live.models import Event
from sessions_app import activity, services
from sessions_app.tests.test_api import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(admin_token):
    return Api(admin_token)


def running_task(api, name="t"):
    _, session = api.call("POST", "sessions", {"name": "s"})
    _, task = api.call("POST", f"sessions/{session['id']}/tasks", {"name": name})
    api.call("PATCH", f"tasks/{task['id']}", {"status": "running"})
    return session, task


def actions_of(task_id):
    rows = Event.objects.filter(task_id=task_id, kind="task.update", data__has_key="by")
    return [(e.data["action"], e.data["by"]) for e in rows.order_by("id")]


def test_pause_and_resume_set_and_clear_pause_requested_in_every_answer(api):
    _, task = running_task(api)
    status, answer = api.call("POST", f"tasks/{task['id']}/pause")
    assert status == 200 and answer["changed"] is True
    assert answer["task"]["pause_requested"] is True and answer["task"]["status"] == "running"
    status, again = api.call("POST", f"tasks/{task['id']}/pause")
    assert status == 200 and again["changed"] is False and again["task"]["pause_requested"]
    # The worker sees it in every answer about the task.
    assert api.call("PATCH", f"tasks/{task['id']}", {"progress": 5})[1]["pause_requested"]
    assert api.call("GET", f"tasks/{task['id']}")[1]["pause_requested"] is True
    status, answer = api.call("POST", f"tasks/{task['id']}/resume")
    assert status == 200 and answer["changed"] is True
    assert answer["task"]["pause_requested"] is False
    assert api.call("POST", f"tasks/{task['id']}/resume")[1]["changed"] is False
    assert api.call("GET", f"tasks/{task['id']}")[1]["pause_requested"] is False


def test_an_ended_or_cancelling_task_cannot_be_paused(api):
    _, task = running_task(api)
    api.call("PATCH", f"tasks/{task['id']}", {"status": "completed"})
    status, answer = api.call("POST", f"tasks/{task['id']}/pause")
    assert status == 409 and "completed" in answer["errors"]["status"][0]
    _, busy = running_task(api)
    api.call("POST", f"tasks/{busy['id']}/cancel")
    status, answer = api.call("POST", f"tasks/{busy['id']}/pause")
    assert status == 409 and "being cancelled" in answer["errors"]["status"][0]


def test_a_cancel_or_the_tasks_end_clears_its_pause(api):
    _, task = running_task(api)
    api.call("POST", f"tasks/{task['id']}/pause")
    _, answer = api.call("POST", f"tasks/{task['id']}/cancel")
    assert answer["task"]["cancel_requested"] and answer["task"]["pause_requested"] is False
    _, other = running_task(api)
    api.call("POST", f"tasks/{other['id']}/pause")
    _, ended = api.call("PATCH", f"tasks/{other['id']}", {"status": "failed", "error": "x"})
    assert ended["pause_requested"] is False
    _, retried = api.call("POST", f"tasks/{other['id']}/retry")
    assert retried["pause_requested"] is False


def test_wrong_method_unknown_task_and_another_users_task(api, worker_token, other_token):
    _, task = running_task(api)
    assert Api().call("POST", f"tasks/{task['id']}/pause")[0] == 401
    assert api.call("GET", f"tasks/{task['id']}/pause")[0] == 405
    assert api.call("POST", "tasks/999999/pause")[0] == 404
    assert api.call("POST", "tasks/999999/resume")[0] == 404
    # Another user's task: not theirs to see, so not there (as for cancel).
    assert Api(other_token).call("POST", f"tasks/{task['id']}/pause")[0] == 404
    assert Api(other_token).call("POST", f"tasks/{task['id']}/resume")[0] == 404
    assert api.call("GET", f"tasks/{task['id']}")[1]["pause_requested"] is False


def test_every_action_names_its_actor_in_its_events(api, worker_token):
    worker = Api(worker_token)
    _, session = worker.call("POST", "sessions", {"name": "mine"})
    _, task = worker.call("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
    worker.call("PATCH", f"tasks/{task['id']}", {"status": "running"})
    worker.call("POST", f"tasks/{task['id']}/pause")
    api.call("POST", f"tasks/{task['id']}/resume")
    api.call("POST", f"tasks/{task['id']}/cancel")
    worker.call("PATCH", f"tasks/{task['id']}", {"status": "cancelled"})
    worker.call("POST", f"tasks/{task['id']}/retry")
    assert actions_of(task["id"]) == [
        ("pause", "worker"), ("resume", "admin"), ("cancel", "admin"), ("retry", "worker"),
    ]  # fmt: skip
    # A worker's own report says nobody.
    reports = Event.objects.filter(task_id=task["id"], kind="task.update").exclude(
        data__has_key="by"
    )
    assert reports.count() == 3  # created, running, cancelled
    # A session cancel names its actor on the session's event and each task's.
    _, second = worker.call("POST", f"sessions/{session['id']}/tasks", {"name": "u"})
    api.call("POST", f"sessions/{session['id']}/cancel")
    assert actions_of(second["id"])[-1] == ("cancel", "admin")
    last = Event.objects.filter(session_id=session["id"], kind="session.update").last()
    assert (last.data["action"], last.data["by"]) == ("cancel", "admin")
    # The system acting (a sweeper, a command) is nobody: `by` null.
    _, third = worker.call("POST", "sessions", {"name": "swept"})
    services.cancel_session(int(third["id"]))
    last = Event.objects.filter(session_id=third["id"], kind="session.update").last()
    assert last.data["by"] is None and last.data["action"] == "cancel"


def test_the_activity_of_a_session_lists_who_did_what_oldest_first(api):
    session, task = running_task(api, name="fetch")
    api.call("POST", f"tasks/{task['id']}/pause")
    api.call("POST", f"tasks/{task['id']}/pause")  # no change: no event
    api.call("POST", f"tasks/{task['id']}/resume")
    services.cancel_session(int(session["id"]))
    listed = activity.of_session(int(session["id"]))
    assert [(e["by"], e["action"], e["on"], e["name"]) for e in listed] == [
        ("admin", "pause", "task", "fetch"),
        ("admin", "resume", "task", "fetch"),
        (None, "cancel", "task", "fetch"),
        (None, "cancel", "session", "s"),
    ]
    assert [e["id"] for e in listed[:3]] == [task["id"]] * 3
    assert listed == sorted(listed, key=lambda e: e["seq"])
    assert activity.of_session(int(session["id"]), limit=1) == listed[-1:]


def test_the_admins_pause_and_resume_actions_name_the_admin(admin_user):
    from django.test import Client

    session, _ = services.create_session(name="s")
    task, _ = services.create_task(session.pk, name="t", status="running")
    ended, _ = services.create_task(session.pk, name="done", status="completed")
    web = Client()
    web.force_login(admin_user)
    url = "/admin/sessions_app/task/"
    answer = web.post(url, {"action": "pause", "_selected_action": [task.pk, ended.pk]})
    assert answer.status_code == 302
    task.refresh_from_db()
    ended.refresh_from_db()
    assert task.pause_requested is True and ended.pause_requested is False
    web.post(url, {"action": "resume", "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.pause_requested is False
    assert actions_of(task.pk) == [("pause", "admin"), ("resume", "admin")]

"""POST /api/v1/tasks/<id>/retry on a task carrying a recorded Celery call:
the answers that need no worker (bad bodies, calls that cannot be sent, a
broker that refuses or never answers: real Celery, real sockets)."""

import socket
import threading

import pytest
from django.test import Client as DjangoClient
from django.test import override_settings

from conftest import free_port, make_token
from sessions_app import resend, services
from sessions_app.models import Task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

CALL = {
    "name": "app.resize",
    "id": "6f1c2d7e-0000-4000-8000-000000000001",
    "root_id": "6f1c2d7e-0000-4000-8000-000000000001",
    "parent_id": None,
    "exchange": "",
    "routing_key": "images",
    "args": [1],
    "kwargs": {"size": 3},
    "sendable": True,
}


@pytest.fixture
def api(admin_user):
    return DjangoClient(headers={"Authorization": f"Bearer {make_token(admin_user)}"})


def failed_task(admin_user, call: dict | None = CALL) -> Task:
    session, _ = services.create_session(name="celery", owner=admin_user)
    task, _ = services.create_task(session_id=session.pk, name="app.resize", external_id=CALL["id"])
    details = {"celery": call} if call is not None else {"other": 1}
    services.update_task(task.pk, status="running", details=details)
    return services.update_task(task.pk, status="failed", error="RuntimeError: boom")


def retry(api, task: Task, body: str | None = "{}"):
    if body is None:
        return api.post(f"/api/v1/tasks/{task.pk}/retry")
    return api.post(f"/api/v1/tasks/{task.pk}/retry", body, content_type="application/json")


def test_a_task_without_a_recorded_call_is_retried_as_before_and_nothing_is_sent(api, admin_user):
    task = failed_task(admin_user, call=None)
    with override_settings(SWITCHBOARD_CELERY_BROKER_URL="redis://127.0.0.1:1/9"):
        answer = retry(api, task, body=None)
    assert answer.status_code == 200
    assert (answer.json()["attempt"], answer.json()["sent"]) == (2, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [('{"send": "maybe"}', "send"), ('{"sned": false}', "sned"), ('{"send": [1]}', "send")],
)
def test_a_bad_body_is_a_400_naming_the_field_and_changes_nothing(api, admin_user, body, field):
    task = failed_task(admin_user)
    answer = retry(api, task, body)
    assert answer.status_code == 400 and field in answer.json()["errors"], answer.content
    assert Task.objects.get(pk=task.pk).attempt == 1


def test_a_body_that_is_not_json_is_refused(api, admin_user):
    answer = retry(api, failed_task(admin_user), "{send")
    assert answer.status_code == 400 and "not JSON" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("call", "why"),
    [
        ({**CALL, "sendable": False, "why": "arguments not JSON (TypeError)"}, "not JSON"),
        ({**CALL, "name": 5}, "name or id is missing"),
        ({**CALL, "args": {"a": 1}}, "not a list and an object"),
    ],
)
def test_a_call_that_cannot_be_sent_is_a_409_naming_it(api, admin_user, call, why):
    task = failed_task(admin_user, call)
    with override_settings(SWITCHBOARD_CELERY_BROKER_URL="redis://127.0.0.1:1/9"):
        answer = retry(api, task)
    assert answer.status_code == 409
    assert why in answer.json()["errors"]["details.celery"][0]
    assert Task.objects.get(pk=task.pk).status == "failed"


def test_a_broker_that_refuses_the_connection_is_a_503_and_the_attempt_is_failed(api, admin_user):
    task = failed_task(admin_user)
    nobody = free_port()  # nothing listens there
    with override_settings(SWITCHBOARD_CELERY_BROKER_URL=f"redis://127.0.0.1:{nobody}/9"):
        answer = retry(api, task)
    assert answer.status_code == 503, answer.content
    assert "attempt 2 was not sent to the Celery broker" in answer.json()["detail"]
    again = Task.objects.get(pk=task.pk)
    assert (again.status, again.attempt) == ("failed", 2)
    assert again.error.startswith("not sent to Celery: ")
    assert again.details["celery"] == CALL  # kept: the next Retry may send it


def test_a_broker_that_never_answers_is_given_up_on_after_the_timeout(api, admin_user):
    task = failed_task(admin_user)
    silent = socket.socket()
    silent.bind(("127.0.0.1", free_port()))
    silent.listen(8)
    held, stop = [], threading.Event()

    def hold() -> None:  # takes connections and says nothing
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/9"
    try:
        with override_settings(
            SWITCHBOARD_CELERY_BROKER_URL=url, SWITCHBOARD_CELERY_SEND_TIMEOUT=1
        ):
            answer = retry(api, task)
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        silent.close()
    assert answer.status_code == 503, answer.content
    assert held, "the send reached the silent broker"
    assert Task.objects.get(pk=task.pk).status == "failed"


def test_the_check_asks_for_celery_when_the_broker_is_set(monkeypatch):
    with override_settings(SWITCHBOARD_CELERY_BROKER_URL="redis://127.0.0.1:6379/9"):
        assert resend.celery_installed() == []
        monkeypatch.setattr(resend.importlib.util, "find_spec", lambda name: None)
        (error,) = resend.celery_installed()
    assert error.id == "switchboard.E101" and "celery" in error.msg
    with override_settings(SWITCHBOARD_CELERY_BROKER_URL=None):
        assert resend.celery_installed() == []


def test_the_admins_retry_action_sends_as_the_api_does_and_says_what_it_could_not(admin_user):
    plain = failed_task(admin_user, call=None)
    stuck = failed_task(admin_user, {**CALL, "sendable": False, "why": "arguments not JSON"})
    browser = DjangoClient()
    browser.force_login(admin_user)
    with override_settings(SWITCHBOARD_CELERY_BROKER_URL="redis://127.0.0.1:1/9"):
        page = browser.post(
            "/admin/sessions_app/task/",
            {"action": "retry", "_selected_action": [plain.pk, stuck.pk]},
            follow=True,
        )
    said = [str(m) for m in page.context["messages"]]
    assert "Retried 1 task(s); 0 sent to Celery again." in said
    assert any(m.startswith(f"Task {stuck.pk}: this Celery task cannot be sent") for m in said)
    assert Task.objects.get(pk=plain.pk).attempt == 2
    assert Task.objects.get(pk=stuck.pk).attempt == 1

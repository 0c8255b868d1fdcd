"""The admin as a live console: a form that was open while the job moved on
saves only what the person edited, onto the row as it is now."""

from html.parser import HTMLParser

import pytest
from django.test import Client

from live.models import Event
from sessions_app import services
from sessions_app.models import Session, Task

pytestmark = pytest.mark.django_db(transaction=True)


class FormFields(HTMLParser):
    """The fields a browser would submit from the page's form `form_id`."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.data: dict[str, list[str]] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        if not self.inside:
            return
        name = attrs.get("name")
        if tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            if kind not in ("submit", "button", "file"):
                self.data.setdefault(name, []).append(attrs.get("value", "on"))
        elif tag == "select" and name:
            self.select = name
        elif tag == "option" and self.select and "selected" in attrs:
            self.data.setdefault(self.select, []).append(attrs.get("value", ""))
        elif tag == "textarea" and name:
            self.textarea = name
            self.data.setdefault(name, []).append("")

    def handle_data(self, data):
        if self.textarea:
            self.data[self.textarea][-1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            if self.textarea:
                # Browsers drop the newline that follows <textarea>.
                self.data[self.textarea][-1] = self.data[self.textarea][-1].removeprefix("\n")
            self.textarea = None


def open_form(browser: Client, url: str, form_id: str) -> dict[str, list[str]]:
    response = browser.get(url)
    assert response.status_code == 200
    parser = FormFields(form_id)
    parser.feed(response.content.decode())
    assert parser.data, "no form fields found"
    return parser.data


@pytest.fixture
def browser(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def running(admin_user):
    session, _ = services.create_session(name="job", owner=admin_user)
    task, _ = services.create_task(session.pk, name="step")
    services.update_task(task.pk, status="running", progress=28.1, message="early")
    return session, Task.objects.get(pk=task.pk)


def test_saving_a_session_untouched_keeps_what_its_tasks_reported_since(browser, running):
    session, task = running
    url = f"/admin/sessions_app/session/{session.pk}/change/"
    form = open_form(browser, url, "session_form")
    services.update_task(task.pk, progress=64.5, message="later")
    seq = Event.objects.latest("id").pk

    response = browser.post(url, form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    task.refresh_from_db()
    assert (task.progress, task.message) == (64.5, "later")
    # Nothing about the task was recorded again.
    assert not Event.objects.filter(pk__gt=seq, task_id=task.pk).exists()


def test_a_task_that_ended_while_the_form_was_open_is_not_refused_or_reopened(browser, running):
    session, task = running
    url = f"/admin/sessions_app/session/{session.pk}/change/"
    form = open_form(browser, url, "session_form")
    services.update_task(task.pk, status="completed")
    form["name"] = ["renamed"]

    response = browser.post(url, form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    task.refresh_from_db()
    session.refresh_from_db()
    assert session.name == "renamed"
    assert (task.status, task.progress) == ("completed", 100.0)


def test_what_the_person_edited_is_saved_onto_the_current_row(browser, running):
    _, task = running
    url = f"/admin/sessions_app/task/{task.pk}/change/"
    form = open_form(browser, url, "task_form")
    services.update_task(task.pk, progress=80.0)
    form["message"] = ["looked at by staff"]

    response = browser.post(url, form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    task.refresh_from_db()
    assert (task.progress, task.message) == (80.0, "looked at by staff")
    event = Event.objects.filter(task_id=task.pk, kind="progress.update").latest("id")
    assert event.data["message"] == "looked at by staff" and event.data["progress"] == 80.0


def test_an_edited_status_is_still_checked(browser, running):
    _, task = running
    services.update_task(task.pk, status="failed", error="boom")
    url = f"/admin/sessions_app/task/{task.pk}/change/"
    form = open_form(browser, url, "task_form")
    form["status"] = ["running"]
    response = browser.post(url, form)
    assert response.status_code == 200
    assert "cannot become running" in response.content.decode()
    task.refresh_from_db()
    assert task.status == "failed"


@pytest.mark.django_db(transaction=True)
def test_the_replay_action_copies_a_session_with_its_tasks_and_log_lines(admin_client):
    from logs_app import services as log_services
    from logs_app.models import LogEntry

    session = services.create_session(name="nightly", external_id="nightly-1")[0]
    task = services.create_task(session.pk, name="load", external_id="load")[0]
    services.update_task(task.pk, status="completed")
    log_services.append_entries(
        session.pk,
        [
            {"message": "of the task", "task_id": task.pk, "uid": "line-1"},
            {"message": "of the session"},
        ],
    )

    answer = admin_client.post(
        "/admin/sessions_app/session/",
        {"action": "replay", "_selected_action": [session.pk]},
        follow=True,
    )

    assert answer.status_code == 200
    assert "Replayed 1 session(s) as new copies." in answer.content.decode()
    copy = Session.objects.exclude(pk=session.pk).get()
    assert copy.external_id.startswith("nightly-1-replay-") and copy.name == "nightly"
    copied_task = Task.objects.get(session=copy)
    assert copied_task.name == "load" and copied_task.status == "completed"
    lines = list(LogEntry.objects.filter(session=copy).order_by("id"))
    assert [line.message for line in lines] == ["of the task", "of the session"]
    assert lines[0].task_id == copied_task.pk and lines[1].task_id is None
    assert lines[0].uid.startswith("line-1-replay-")
    # The original is untouched.
    assert LogEntry.objects.filter(session=session).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_replay_that_is_refused_says_where_it_stopped(admin_client, monkeypatch):
    from live.errors import Refused
    from sessions_app import eventfiles

    session = services.create_session(name="nightly")[0]

    def refuse(self, line):
        raise Refused("cannot become running", field="status")

    monkeypatch.setattr(eventfiles.Replay, "apply", refuse)
    answer = admin_client.post(
        "/admin/sessions_app/session/",
        {"action": "replay", "_selected_action": [session.pk]},
        follow=True,
    )
    assert answer.status_code == 200
    page = answer.content.decode()
    assert f"Session {session.pk} stopped at line 1: status: cannot become running" in page
    assert "nothing replayed" in page and "Replayed 1" not in page

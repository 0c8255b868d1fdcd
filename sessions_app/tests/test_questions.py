"""Questions a job asks and a person answers, through the HTTP API (Django's test client)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from live.models import Event, EventChannel
from sessions_app import questions, services
from sessions_app.models import Question
from sessions_app.tests.test_api import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker(worker_token):
    return Api(worker_token)


@pytest.fixture
def admin(admin_token):
    return Api(admin_token)


@pytest.fixture
def task(worker_user):
    session, _ = services.create_session(name="deploy", owner=worker_user)
    task, _ = services.create_task(session.pk, name="migrate")
    return task


def ask(api, task, **body):
    return api.call("POST", f"tasks/{task.pk}/questions", {"prompt": "Go on?", **body})


def test_a_question_is_asked_answered_once_and_told_on_three_channels(worker, admin, task):
    status, question = ask(worker, task, choices=["yes", "no"], default="no", timeout=600)
    assert status == 201
    assert question == {
        **question,
        "task_id": str(task.pk),
        "session_id": str(task.session_id),
        "prompt": "Go on?",
        "choices": ["yes", "no"],
        "default": "no",
        "status": "open",
        "answer": None,
        "answered_by": None,
    }
    assert question["asked_at"] and question["expires_at"] > question["asked_at"]
    status, listed = admin.call("GET", "questions", status="open")
    assert status == 200 and [q["id"] for q in listed["results"]] == [question["id"]]
    assert listed["count"] == 1 and listed["seq"] > 0

    status, answered = admin.call("POST", f"questions/{question['id']}/answer", {"answer": "yes"})
    assert status == 200
    assert answered["status"] == "answered" and answered["answer"] == "yes"
    assert answered["answered_by"] == "admin" and answered["answered_at"]
    status, second = admin.call("POST", f"questions/{question['id']}/answer", {"answer": "no"})
    assert status == 409
    assert second["question"] == answered and second["detail"]
    assert worker.call("GET", f"questions/{question['id']}?wait=1") == (200, answered)
    assert admin.call("GET", "questions", status="open")[1]["count"] == 0

    answer = {**answered, "action": "answer", "by": "admin"}
    for kind, data in (("question.asked", question), ("question.answered", answer)):
        (event,) = Event.objects.filter(kind=kind)
        assert event.data == data and event.task_id == task.pk
        places = set(EventChannel.objects.filter(event=event).values_list("channel", flat=True))
        assert places == {f"task:{task.pk}", f"session:{task.session_id}", "tasks"}


def test_an_answer_outside_the_choices_is_400_on_answer(worker, task):
    question = ask(worker, task, choices=["a", "b"])[1]
    status, body = worker.call("POST", f"questions/{question['id']}/answer", {"answer": "c"})
    assert status == 400 and list(body["errors"]) == ["answer"]
    assert Question.objects.get().status == "open"


def test_a_question_without_choices_takes_any_text(worker, task):
    question = ask(worker, task, choices=None)[1]
    status, body = worker.call("POST", f"questions/{question['id']}/answer", {"answer": "blue"})
    assert status == 200 and body["answer"] == "blue" and body["answered_by"] == "worker"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"choices": []}, "choices"),
        ({"choices": ["a", "a"]}, "choices"),
        ({"choices": ["a", ""]}, "choices"),
        ({"choices": ["x" * 201]}, "choices"),
        ({"choices": [str(n) for n in range(21)]}, "choices"),
        ({"choices": ["a"], "default": "b"}, "default"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -3}, "timeout"),
        ({"timeout": 7 * 24 * 3600 + 1}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_question_is_400_naming_the_field(worker, task, body, field):
    status, answer = ask(worker, task, **body)
    assert status == 400 and list(answer["errors"]) == [field], answer
    assert not Question.objects.exists()


def test_wait_past_60_or_below_0_is_400_naming_wait(worker, task):
    question = ask(worker, task)[1]
    for wait in ("61", "-1", "x"):
        status, body = worker.call("GET", f"questions/{question['id']}?wait={wait}")
        assert status == 400 and list(body["errors"]) == ["wait"]


def test_a_retry_with_the_same_uid_asks_once(worker, task):
    first = ask(worker, task, uid="k1")
    again = ask(worker, task, uid="k1")
    assert first[0] == 201 and again == (200, first[1])
    assert Question.objects.count() == 1


def test_another_user_can_neither_see_nor_ask_nor_answer(worker, other_token, task):
    other = Api(other_token)
    question = ask(worker, task)[1]
    assert ask(other, task)[0] == 404
    assert other.call("GET", f"questions/{question['id']}")[0] == 404
    status, body = other.call("POST", f"questions/{question['id']}/answer", {"answer": "x"})
    assert status == 404
    assert other.call("GET", "questions")[1]["count"] == 0
    assert Api().call("GET", f"questions/{question['id']}")[0] == 401


def test_a_question_past_its_timeout_is_expired_to_its_default_once(worker, task):
    question = ask(worker, task, choices=["retry", "skip"], default="skip", timeout=60)[1]
    Question.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    status, expired = worker.call("GET", f"questions/{question['id']}")
    assert status == 200
    assert expired["status"] == "expired" and expired["answer"] == "skip"
    assert expired["answered_by"] is None and expired["answered_at"]
    # The sweeper, a second look and an answer find it done: one event in all.
    assert questions.expire_due() == []
    assert worker.call("GET", f"questions/{question['id']}?wait=5") == (200, expired)
    status, body = worker.call("POST", f"questions/{question['id']}/answer", {"answer": "retry"})
    assert status == 409 and body["question"] == expired
    (event,) = Event.objects.filter(kind="question.answered")
    assert event.data == {**expired, "action": "expire", "by": None}


def test_the_sweeper_expires_what_nobody_looks_at(worker, task):
    ask(worker, task, timeout=60)
    ask(worker, task, timeout=3600)
    Question.objects.filter(pk=Question.objects.first().pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert questions.expire_due() == [Question.objects.first().pk]
    assert list(Question.objects.values_list("status", "answer")) == [
        ("expired", None),
        ("open", None),
    ]
    assert Event.objects.filter(kind="question.answered").count() == 1


def test_a_list_filters_by_task_and_refuses_unknown_parameters(worker, task):
    ask(worker, task)
    other, _ = services.create_task(task.session_id, name="other")
    ask(worker, other)
    assert worker.call("GET", "questions", task=other.pk)[1]["count"] == 1
    assert worker.call("GET", "questions", session=task.session_id)[1]["count"] == 2
    status, body = worker.call("GET", "questions", status="closed")
    assert status == 400 and list(body["errors"]) == ["status"]
    status, body = worker.call("GET", "questions", task_id=1)
    assert status == 400 and list(body["errors"]) == ["task_id"]


def test_an_export_with_questions_replays_them_once(worker, worker_user, task, tmp_path):
    import io

    from django.core.management import call_command

    question = ask(worker, task, choices=["a", "b"])[1]
    worker.call("POST", f"questions/{question['id']}/answer", {"answer": "a"})
    ask(worker, task, prompt="Still open?")
    exported = tmp_path / "events.jsonl"
    call_command("export_events", "--output", str(exported), stdout=io.StringIO())
    assert "question.answered" in exported.read_text()
    out = io.StringIO()
    call_command("replay_events", str(exported), "--as-new", "--speed", "0", stdout=out)
    assert "Replayed" in out.getvalue()
    copies = Question.objects.exclude(task=task).select_related("answered_by")
    assert sorted((q.prompt, q.status, q.answer) for q in copies) == [
        ("Go on?", "answered", "a"),
        ("Still open?", "open", None),
    ]
    assert {q.answered_by for q in copies} == {worker_user, None}
    copy = copies.get(prompt="Go on?")
    told = Event.objects.filter(task_id=copy.task_id, kind__startswith="question.")
    told = [e for e in told if e.data["id"] == str(copy.pk)]
    assert [e.kind for e in told] == ["question.asked", "question.answered"]
    assert told[1].data["by"] == worker_user.username
    # Onto the tasks it came from: the questions themselves, nothing new.
    call_command("replay_events", str(exported), "--speed", "0", stdout=io.StringIO())
    assert Question.objects.count() == 4


def test_a_bad_question_line_is_refused_naming_its_field(worker, task, tmp_path):
    import json

    from django.core.management import CommandError, call_command

    question = ask(worker, task, choices=["a", "b"])[1]
    line = {"event": "question.asked", "session": str(task.session_id), "task": str(task.pk)}
    for data, field in (
        ({**question, "choices": "a"}, "data.choices"),
        ({**question, "status": "closed"}, "data.status"),
        ({**question, "status": "answered", "answer": "c"}, "data.answer"),
        ({**question, "asked_at": "yesterday"}, "data.asked_at"),
    ):
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps({**line, "data": data}) + "\n")
        with pytest.raises(CommandError, match=f"line 1: {field}"):
            call_command("replay_events", str(path), "--speed", "0")
    assert Question.objects.count() == 1


def test_answers_and_expiries_are_in_the_activity_list(worker, task):
    from sessions_app import activity

    answered = ask(worker, task, choices=["a", "b"])[1]
    worker.call("POST", f"questions/{answered['id']}/answer", {"answer": "b"})
    ask(worker, task, prompt="Skip it?", choices=["skip", "go"], default="skip", timeout=60)
    Question.objects.filter(status="open").update(expires_at=timezone.now())
    questions.expire_due()
    listed = activity.of_session(task.session_id)
    assert [(e["by"], e["action"], e["on"], e["id"], e["name"]) for e in listed] == [
        ("worker", "answer", "question", str(task.pk), "Go on?"),
        (None, "expire", "question", str(task.pk), "Skip it?"),
    ]

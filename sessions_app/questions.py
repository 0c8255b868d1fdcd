"""A job asks a question on its task; a person answers it, once.

Each change records its event in the same transaction: `question.asked`
when asked, `question.answered` when answered or expired (status `expired`,
the answer its `default`, `answered_by` null), on the task's and the
session's channels and on `tasks`. Of two answers at once exactly one wins:
the answer is a conditional UPDATE of an open question, so the other finds
it answered and is refused (`conflict`, carrying the question as first
answered). Expiry is done by whoever looks first (a read, a wait, an answer)
and by a sweeper every second in each server process, the same conditional
UPDATE making it happen once.
"""

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from live import events
from live.errors import Refused
from live.validation import as_utc, text_problem
from operations.sweeper import Sweeper
from sessions_app import access, channels
from sessions_app.locks import Check, lock_task
from sessions_app.models import Question, Task
from sessions_app.recording import service_write

MAX_PROMPT = 2000
MAX_ANSWER = 2000
MAX_CHOICES = 20
MAX_CHOICE = 200
MAX_TIMEOUT = 7 * 24 * 3600


def _record(question: Question, kind: str, owner_id: int | None) -> None:
    """The question's event. An answer or an expiry also says what was done
    and by whom (`action`, `by`: null when it expired), as every action does."""
    task = question.task
    data = question.as_json()
    if kind == "question.answered":
        expired = question.status == Question.EXPIRED
        data.update(action="expire" if expired else "answer", by=data["answered_by"])
    events.record(
        kind,
        channels.of_task(task.pk, task.session_id),
        session_id=task.session_id,
        task_id=task.pk,
        data=data,
        extras={"owner_id": owner_id},
    )


def check_question(prompt, choices, default, timeout) -> None:
    """Refuse a bad question, naming the field (the API's schema checks shapes)."""
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
        raise Refused(f"a non-empty text of at most {MAX_PROMPT} characters", field="prompt")
    if choices is not None:
        if not isinstance(choices, list) or not 1 <= len(choices) <= MAX_CHOICES:
            raise Refused(f"a list of 1 to {MAX_CHOICES} choices, or null", field="choices")
        for choice in choices:
            if not isinstance(choice, str) or not choice.strip() or len(choice) > MAX_CHOICE:
                message = f"each choice is a non-empty text of at most {MAX_CHOICE} characters"
                raise Refused(message, field="choices")
        if len(set(choices)) != len(choices):
            raise Refused("choices must be distinct", field="choices")
    if default is not None:
        check_answer(default, choices, "default")
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
        raise Refused(f"seconds, more than 0 and at most {MAX_TIMEOUT}", field="timeout")


def check_answer(answer, choices, field: str = "answer") -> None:
    if choices is not None:
        if answer not in choices:
            raise Refused("must be one of the choices", field=field)
    elif not isinstance(answer, str) or not answer.strip() or len(answer) > MAX_ANSWER:
        raise Refused(f"a non-empty text of at most {MAX_ANSWER} characters", field=field)
    elif (problem := text_problem(answer)) is not None:
        raise Refused(problem, field=field)


def ask(
    task_id: int,
    *,
    prompt: str,
    choices: list[str] | None = None,
    default: str | None = None,
    timeout: float | None = None,
    uid: str | None = None,
    check: Check | None = None,
) -> tuple[Question, bool]:
    """Ask a question on a task; with a `uid` asked before on it, that
    question (created=False). `check`: as for lock_task."""
    check_question(prompt, choices, default, timeout)
    mine = Question.objects.select_related("task", "answered_by").filter(task_id=task_id, uid=uid)
    with service_write():
        session, task = lock_task(task_id, check)
        if uid is not None and (existing := mine.first()) is not None:
            return existing, False
        now = timezone.now()
        question = Question(
            task=task,
            prompt=prompt,
            choices=choices,
            default=default,
            uid=uid,
            asked_at=now,
            expires_at=now + timedelta(seconds=timeout) if timeout is not None else None,
        )
        try:
            with transaction.atomic():
                question.save(force_insert=True)
        except IntegrityError:  # the same uid, at the same moment (under the task's lock: rare)
            winner = mine.first()
            if winner is None:
                raise
            return winner, False
        _record(question, "question.asked", session.owner_id)
    return question, True


def _owner(task: Task) -> int | None:
    return task.session.owner_id


def get(question_id: int) -> Question:
    return Question.objects.select_related("task__session", "answered_by").get(pk=question_id)


def expire_due(question_id: int | None = None) -> list[int]:
    """Expire the open questions past their time (or only this one): each
    once, whoever asks first. Their ids."""
    now = timezone.now()
    due = Question.objects.filter(status=Question.OPEN, expires_at__lte=now)
    if question_id is not None:
        due = due.filter(pk=question_id)
    done = []
    for pk in due.values_list("pk", flat=True)[:500]:
        with service_write():
            changed = Question.objects.filter(pk=pk, status=Question.OPEN).update(
                status=Question.EXPIRED, answer=F("default"), answered_at=now, answered_by=None
            )
            if changed:
                question = get(pk)
                _record(question, "question.answered", _owner(question.task))
                done.append(pk)
    return done


def answer(question_id: int, text, user) -> Question:
    """Answer an open question for `user` (who must be allowed to change its
    task: access.changeable_task). An answered or expired one is refused
    with `conflict`, carrying the question as it was answered."""
    task_id = Question.objects.filter(pk=question_id).values_list("task_id", flat=True).first()
    if task_id is None or not access.visible_tasks(user).filter(pk=task_id).exists():
        message = f"no question {question_id} that you can see"
        raise Refused(message, code="not_found", field="question_id")
    access.changeable_task(user, task_id)
    expire_due(question_id)
    with service_write():
        question = get(question_id)
        if question.status == Question.OPEN:
            check_answer(text, question.choices)
        now = timezone.now()
        changed = Question.objects.filter(pk=question_id, status=Question.OPEN).update(
            status=Question.ANSWERED, answer=text, answered_by=user, answered_at=now
        )
        question = get(question_id)
        if changed:
            _record(question, "question.answered", _owner(question.task))
    if not changed:
        raise Refused(
            f"this question is {question.status} already",
            code="conflict",
            question=question.as_json(),
        )
    return question


def look(user, question_id: int) -> Question:
    """The question, if the user may see its task (expired first if due)."""
    question = Question.objects.filter(pk=question_id, task__in=access.visible_tasks(user)).first()
    if question is None:
        raise Refused(f"no question {question_id} that you can see", code="not_found")
    if question.status == Question.OPEN and question.expires_at is not None:
        expire_due(question_id)
    return get(question_id)


def register_replay() -> None:
    """Event files carry question events; a replay asks and answers them
    again on the replayed task (the file's question id kept as its `uid`, so
    a file replayed twice makes each question once; onto the task it was
    asked on, it is the question itself)."""
    from sessions_app import eventlines

    for kind in ("question.asked", "question.answered"):
        eventlines.register(kind, eventlines.Kind(check=_checked_line, apply=_replay))


def _checked_line(data: dict) -> dict:
    """A question line's data as the API showed it, checked as an ask would be."""
    try:
        check_question(data.get("prompt"), data.get("choices"), data.get("default"), None)
    except Refused as error:
        raise ValueError(f"data.{error.field}: {error.message}") from None
    if data.get("status") not in (Question.OPEN, Question.ANSWERED, Question.EXPIRED):
        raise ValueError("data.status: one of open, answered, expired")
    if data["status"] != Question.OPEN:
        try:
            check_answer(data.get("answer"), data.get("choices"))
        except Refused as error:
            raise ValueError(f"data.answer: {error.message}") from None
    times = {}
    for name in ("asked_at", "expires_at", "answered_at"):
        value = data.get(name)
        try:
            times[name] = None if value is None else as_utc(datetime.fromisoformat(str(value)))
        except ValueError:
            raise ValueError(f"data.{name}: {value!r} is not an ISO 8601 time") from None
    who = data.get("answered_by")
    if who is not None and not isinstance(who, str):
        raise ValueError("data.answered_by: a username or null")
    known = ("id", "prompt", "choices", "default", "status", "answer", "answered_by")
    return {**{k: data.get(k) for k in known}, **times}


def _replay(replay, line, session_id: int) -> None:
    """Ask the line's question on its replayed task once; an answered line
    answers it (the user by username, if there is one here)."""
    from django.contrib.auth import get_user_model

    data, task_id = line.checked, replay.task_id(session_id, line.task)
    uid = f"replay:{data['id']}"[:64]
    with service_write():
        session, task = lock_task(task_id)
        mine = Q(uid=uid)
        if str(data["id"]).isdigit() and int(data["id"]) < 2**63:  # replayed onto its own task
            mine |= Q(pk=int(data["id"]))
        question = Question.objects.select_related("task").filter(mine, task=task).first()
        if question is None:
            question = Question(task=task, uid=uid, status=Question.OPEN)
            for name in ("prompt", "choices", "default", "expires_at"):
                setattr(question, name, data[name])
            question.asked_at = data["asked_at"] or timezone.now()
            question.save(force_insert=True)
            _record(question, "question.asked", session.owner_id)
        if data["status"] == Question.OPEN or question.status != Question.OPEN:
            return
        users, username = get_user_model(), data["answered_by"]
        question.status, question.answer = data["status"], data["answer"]
        question.answered_at = data["answered_at"] or timezone.now()
        if username is not None:
            question.answered_by = users.objects.filter(**{users.USERNAME_FIELD: username}).first()
        question.save()
        _record(question, "question.answered", session.owner_id)


# Started with the server (operations.apps).
start = Sweeper("question-expiry", lambda: expire_due(), lambda: 1.0).start

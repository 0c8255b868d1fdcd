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

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from live import events
from live.errors import Refused
from live.validation import text_problem
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
    task = question.task
    events.record(
        kind,
        channels.of_task(task.pk, task.session_id),
        session_id=task.session_id,
        task_id=task.pk,
        data=question.as_json(),
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
    """Event files carry question events; a replay reads them and does not
    apply them (a question belongs to the run that asked it)."""
    from sessions_app import eventlines

    for kind in ("question.asked", "question.answered"):
        eventlines.register(kind, eventlines.Kind(check=lambda data: None, apply=_not_applied))


def _not_applied(replay, line, session_id) -> None:
    return None


# Started with the server (operations.apps).
start = Sweeper("question-expiry", lambda: expire_due(), lambda: 1.0).start

"""HTTP API for questions a job asks and a person answers (mounted by project/api.py)."""

import asyncio

from django.db.models import Q
from ninja import Query, Router
from ninja import Status as Answer
from pydantic import Field

from live import dbthreads, events
from live.auth import ASYNC_AUTH
from live.daphne_hooks import draining
from live.errors import Refused
from live.validation import Clean, Input
from sessions_app import access, channels, questions
from sessions_app.api import ERRORS, known_parameters, may_change
from sessions_app.models import Question
from sessions_app.schemas import ErrorOut, Page, QuestionOut

router = Router(tags=["questions"])
MAX_WAIT = 60
# How often a wait looks again: briefly, on a database thread, then asleep on the loop.
POLL = 0.25


class QuestionIn(Input):
    prompt: str = Field(min_length=1, max_length=questions.MAX_PROMPT)
    choices: list[str] | None = Field(None, min_length=1, max_length=questions.MAX_CHOICES)
    default: str | None = Field(None, min_length=1, max_length=questions.MAX_ANSWER)
    timeout: float | None = Field(
        None, gt=0, le=questions.MAX_TIMEOUT, allow_inf_nan=False, description="seconds"
    )
    uid: str | None = Field(
        None, min_length=1, max_length=64, description="a retry with it asks nothing twice"
    )


class AnswerIn(Input):
    answer: str = Field(min_length=1, max_length=questions.MAX_ANSWER)


class ConflictOut(ErrorOut):
    question: QuestionOut


class QuestionPage(Page):
    results: list[QuestionOut]
    seq: int


class WaitQuery(Clean):
    wait: float = Field(
        0, ge=0, le=MAX_WAIT, allow_inf_nan=False, description="seconds to wait for the answer"
    )


class QuestionListQuery(Clean):
    status: str | None = Field(None, description="open, answered or expired (comma separated)")
    task: int | None = Field(None, ge=1, le=2**62, description="only questions of this task")
    session: int | None = Field(None, ge=1, le=2**62, description="only those of this session")
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=2**31)


@router.post(
    "/tasks/{int:task_id}/questions",
    response={200: QuestionOut, 201: QuestionOut, **ERRORS},
    auth=ASYNC_AUTH,
)
async def ask(request, task_id: int, payload: QuestionIn):
    """Ask a question on a task (as a worker reports on it). With a `uid`
    asked before on this task, answer that question (200)."""

    def work() -> tuple[dict, bool]:
        question, created = questions.ask(
            task_id,
            prompt=payload.prompt,
            choices=payload.choices,
            default=payload.default,
            timeout=payload.timeout,
            uid=payload.uid,
            check=may_change(request),
        )
        return question.as_json(), created

    question, created = await dbthreads.run(work)
    return Answer(201 if created else 200, question)


@router.post(
    "/questions/{int:question_id}/answer",
    response={200: QuestionOut, 409: ConflictOut, **{k: v for k, v in ERRORS.items() if k != 409}},
)
def answer(request, question_id: int, payload: AnswerIn):
    """Answer an open question; one answered or expired already is 409,
    carrying the question as it was first answered."""
    return questions.answer(question_id, payload.answer, request.auth).as_json()


@router.get("/questions/{int:question_id}", response={200: QuestionOut, **ERRORS}, auth=ASYNC_AUTH)
async def get_question(request, question_id: int, query: Query[WaitQuery]):
    """One question. With `wait` (seconds, at most 60), the answer waits until
    it is answered or expired, or that long with it still open."""
    user = request.auth
    deadline = asyncio.get_running_loop().time() + query.wait
    while True:
        question = await dbthreads.run(lambda: questions.look(user, question_id).as_json())
        left = deadline - asyncio.get_running_loop().time()
        # A server that drains answers at once: the caller asks again elsewhere.
        if question["status"] != Question.OPEN or left <= 0 or draining():
            return question
        await asyncio.sleep(min(POLL, left))


@router.get("/questions", response={200: QuestionPage, **ERRORS})
def list_questions(request, query: Query[QuestionListQuery]):
    """Questions of the tasks the caller can see, oldest first; `?status=open`
    lists what waits for someone. `seq`: the newest event of the `tasks`
    channel this list includes (subscribe with it as `since` to keep it live)."""
    known_parameters(request, query)
    questions.expire_due()
    seq = events.channel_head(channels.TASKS)
    found = Question.objects.filter(task__in=access.visible_tasks(request.auth))
    if query.status:
        wanted = [s.strip() for s in query.status.split(",") if s.strip()]
        allowed = [Question.OPEN, Question.ANSWERED, Question.EXPIRED]
        bad = [s for s in wanted if s not in allowed]
        if bad:
            raise Refused(f"unknown status {bad[0]!r}; one of {', '.join(allowed)}", field="status")
        found = found.filter(status__in=wanted)
    if query.task is not None:
        found = found.filter(task_id=query.task)
    if query.session is not None:
        found = found.filter(Q(task__session_id=query.session))
    count = found.count()
    rows = found.select_related("task", "answered_by").order_by("id")
    end = query.offset + query.limit
    return {
        "results": [q.as_json() for q in rows[query.offset : end]],
        "count": count,
        "limit": query.limit,
        "offset": query.offset,
        "next_offset": end if end < count else None,
        "seq": seq,
    }

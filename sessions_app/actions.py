"""cancel_task and answer_question, the socket actions of sessions and tasks,
plugged into the core's protocol."""

from typing import Any, Literal

from live import events, protocol
from live.errors import Refused
from live.models import Event
from sessions_app import access, channels, questions, services


class CancelTask(protocol.Frame):
    action: Literal["cancel_task"]
    task_id: protocol.Id = None


def cancel(user, task_id: int) -> tuple[dict, bool, str | None]:
    """Cancel the task for the user: its JSON, whether it changed, and the
    task.update frame it caused (None if none)."""
    access.changeable_task(user, task_id)
    task, changed = services.cancel_task(task_id)
    update = None
    if changed:
        event = Event.objects.filter(task_id=task_id, kind="task.update").order_by("-id").first()
        update = events.dumps(events.frames_for([event], channels.task(task_id))[0].frame)
    return task.as_json(), changed, update


async def cancel_task(consumer, frame: CancelTask, frame_id) -> None:
    if not frame.task_id:
        raise Refused("cancel_task needs a task_id", field="task_id")
    # Live frames wait until the ack is out: "ack, then a task.update".
    task, changed, update = await consumer.hold(cancel, consumer.user, frame.task_id)
    ack = protocol.ack(
        "cancel_task",
        task_id=str(frame.task_id),
        changed=changed,
        status=task["status"],
        cancel_requested=task["cancel_requested"],
    )
    await consumer.reply(frame_id, ack)
    mine = {channels.task(frame.task_id), channels.session(int(task["session_id"]))}
    watching = mine & set(consumer.subs)
    if update is not None and not watching:
        # Not subscribed to it: the task.update still follows the ack.
        await consumer.send_frame(update)


class AnswerQuestion(protocol.Frame):
    action: Literal["answer_question"]
    question_id: protocol.Id = None
    answer: Any = None


async def answer_question(consumer, frame: AnswerQuestion, frame_id) -> None:
    """As POST /questions/<id>/answer: an ack with the question answered, or
    an error (`conflict` carrying the question as first answered)."""
    if not frame.question_id:
        raise Refused("answer_question needs a question_id", field="question_id")
    if not isinstance(frame.answer, str):
        raise Refused("answer_question needs an answer (a text)", field="answer")
    question = await consumer.hold(
        lambda: questions.answer(frame.question_id, frame.answer, consumer.user).as_json()
    )
    await consumer.reply(frame_id, protocol.ack("answer_question", question=question))


def register_actions() -> None:
    protocol.register(CancelTask, cancel_task)
    protocol.register(AnswerQuestion, answer_question)

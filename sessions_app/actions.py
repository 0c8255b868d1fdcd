"""cancel_task, pause_task, resume_task and answer_question, the socket
actions of sessions and tasks, plugged into the core's protocol."""

from collections.abc import Callable
from typing import Any, Literal

from live import events, protocol
from live.errors import Refused
from live.models import Event
from sessions_app import access, channels, questions, services


class CancelTask(protocol.Frame):
    action: Literal["cancel_task"]
    task_id: protocol.Id = None


class PauseTask(protocol.Frame):
    action: Literal["pause_task"]
    task_id: protocol.Id = None


class ResumeTask(protocol.Frame):
    action: Literal["resume_task"]
    task_id: protocol.Id = None


def act(service: Callable, user, task_id: int) -> tuple[dict, bool, str | None]:
    """Do `service` (services.cancel_task, pause_task, resume_task) for the user:
    the task's JSON, whether it changed, and the task.update frame it caused
    (None if none)."""
    access.changeable_task(user, task_id)
    task, changed = service(task_id, by=user.get_username())
    update = None
    if changed:
        event = Event.objects.filter(task_id=task_id, kind="task.update").order_by("-id").first()
        update = events.dumps(events.frames_for([event], channels.task(task_id))[0].frame)
    return task.as_json(), changed, update


async def _answer(consumer, name: str, frame, frame_id, service: Callable, shown: str) -> None:
    if not frame.task_id:
        raise Refused(f"{name} needs a task_id", field="task_id")
    # Live frames wait until the ack is out: "ack, then a task.update".
    task, changed, update = await consumer.hold(act, service, consumer.user, frame.task_id)
    ack = protocol.ack(
        name,
        task_id=str(frame.task_id),
        changed=changed,
        status=task["status"],
        **{shown: task[shown]},
    )
    await consumer.reply(frame_id, ack)
    mine = {channels.task(frame.task_id), channels.session(int(task["session_id"]))}
    watching = mine & set(consumer.subs)
    if update is not None and not watching:
        # Not subscribed to it: the task.update still follows the ack.
        await consumer.send_frame(update)


async def cancel_task(consumer, frame: CancelTask, frame_id) -> None:
    await _answer(
        consumer, "cancel_task", frame, frame_id, services.cancel_task, "cancel_requested"
    )


async def pause_task(consumer, frame: PauseTask, frame_id) -> None:
    await _answer(consumer, "pause_task", frame, frame_id, services.pause_task, "pause_requested")


async def resume_task(consumer, frame: ResumeTask, frame_id) -> None:
    await _answer(consumer, "resume_task", frame, frame_id, services.resume_task, "pause_requested")


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
    protocol.register(PauseTask, pause_task)
    protocol.register(ResumeTask, resume_task)
    protocol.register(AnswerQuestion, answer_question)

"""Retry that runs the work again: a task that `switchboard_client.celery`
recorded (its `details.celery`: the registered name, args, kwargs, routing)
is sent to the Celery broker again after its new attempt is committed.

The message carries the same Celery task id as the run it repeats (as
Celery's own `Task.retry` does, so the task's `external_id` stays the Celery
task id) and the header `switchboard_task_id`, by which the worker's
connector makes the run the next attempt of this task.

- `SWITCHBOARD_CELERY_BROKER_URL` unset, no recorded call, or `send: false`:
  the new attempt only, and the answer's `sent` says why nothing went out
  (`null` when there was nothing to send).
- A recorded call that cannot be sent (arguments left out or too large when
  it ran): 409 naming `details.celery`, nothing changed.
- The broker does not take it within `SWITCHBOARD_CELERY_SEND_TIMEOUT`
  seconds: the new attempt is failed with `not sent to Celery: …` (a Retry
  makes the next one) and the answer is 503.

Celery is imported only here, and only when the broker is set.
"""

import importlib.util
import json
import threading
from typing import Any

from django.conf import settings
from django.core import checks
from pydantic import ValidationError

from live.errors import Refused
from sessions_app import services
from sessions_app.models import Status, Task
from sessions_app.schemas import RetryIn

HEADER = "switchboard_task_id"  # switchboard_client.celery_calls.HEADER
_app_lock = threading.Lock()
_apps: dict[str, Any] = {}


def asked_to_send(request) -> bool:
    """A retry's body: none (or `{}`, or one not JSON) sends, `{"send": false}` does not."""
    body = request.body
    if request.content_type != "application/json" or not body.strip():
        return True
    try:
        data = json.loads(body)
    except ValueError:
        raise Refused("the body is not JSON", code="invalid_json") from None
    try:
        return RetryIn.model_validate(data).send
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise Refused(first["msg"], field=field) from None


def retry(task_id: int, *, by: str | None, send: bool = True) -> tuple[Task, dict | None]:
    """A new attempt of an ended task, and what was sent for it."""
    details = Task.objects.values_list("details", flat=True).get(pk=task_id)
    call = details.get("celery") if isinstance(details, dict) else None
    if not isinstance(call, dict):
        return services.retry_task(task_id, by=by), None
    broker = settings.SWITCHBOARD_CELERY_BROKER_URL
    if not send or not broker:
        task = services.retry_task(task_id, by=by)
        why = (
            "not asked to (send: false)" if not send else "SWITCHBOARD_CELERY_BROKER_URL is not set"
        )
        return task, _sent(call, False, why)
    message = _message(call)
    task = services.retry_task(task_id, by=by)  # committed: the worker finds it pending
    try:
        _send(broker, message, task.pk)
    except Exception as error:
        why = f"not sent to Celery: {type(error).__name__}: {error}"[:1000]
        services.update_task(task.pk, status=Status.FAILED, error=why)
        raise Refused(
            f"attempt {task.attempt} was not sent to the Celery broker and is failed"
            f" ({why}); Retry makes the next attempt",
            code="unavailable",
        ) from None
    return task, _sent(call, True, None)


def _sent(call: dict, sent: bool, reason: str | None) -> dict:
    return {
        "sent": sent,
        "to": "celery",
        "name": call.get("name") if isinstance(call.get("name"), str) else None,
        "celery_id": call.get("id") if isinstance(call.get("id"), str) else None,
        "reason": reason,
    }


def _message(call: dict) -> dict:
    """What send_task is given, from the recorded call; 409 when it cannot be sent."""

    def refuse(why: str):
        return Refused(
            f"this Celery task cannot be sent again: {why}; nothing changed"
            ' (retry with {"send": false} to record a new attempt only)',
            field="details.celery",
            code="conflict",
        )

    if call.get("sendable") is not True:
        raise refuse(str(call.get("why") or "its call was not recorded"))
    name, celery_id = call.get("name"), call.get("id")
    args, kwargs = call.get("args"), call.get("kwargs")
    if not isinstance(name, str) or not name or not isinstance(celery_id, str) or not celery_id:
        raise refuse("its recorded name or id is missing")
    if not isinstance(args, list) or not isinstance(kwargs, dict | None):
        raise refuse("its recorded arguments are not a list and an object")
    message = {"name": name, "args": args, "kwargs": kwargs or {}, "task_id": celery_id}
    for key in ("root_id", "parent_id"):
        if isinstance(call.get(key), str):
            message[key] = call[key]
    exchange, routing_key = call.get("exchange") or "", call.get("routing_key")
    if isinstance(routing_key, str) and routing_key:
        if exchange in ("", routing_key):
            message["queue"] = routing_key
        else:
            message.update(exchange=exchange, routing_key=routing_key)
    return message


def _celery(broker: str):
    """One Celery app per broker, for sending only, that never waits long."""
    with _app_lock:
        if broker not in _apps:
            from celery import Celery

            timeout = settings.SWITCHBOARD_CELERY_SEND_TIMEOUT
            app = Celery("switchboard", broker=broker, set_as_current=False)
            app.conf.update(
                broker_connection_retry=False,
                broker_connection_max_retries=0,
                broker_connection_timeout=timeout,
                broker_transport_options={
                    "socket_timeout": timeout,
                    "socket_connect_timeout": timeout,
                    "max_retries": 0,
                },
                task_publish_retry=False,
            )
            _apps[broker] = app
        return _apps[broker]


def _send(broker: str, message: dict, task_id: int) -> None:
    """send_task in a thread of its own, waited for at most the timeout."""
    timeout = settings.SWITCHBOARD_CELERY_SEND_TIMEOUT
    failed: list[BaseException] = []
    message = {**message}
    name = message.pop("name")

    def go() -> None:
        try:
            _celery(broker).send_task(name, headers={HEADER: str(task_id)}, retry=False, **message)
        except BaseException as error:  # told to the request below
            failed.append(error)

    thread = threading.Thread(target=go, name="switchboard-celery-send", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"the broker did not take it within {timeout:g} s")
    if failed:
        raise failed[0]


@checks.register
def celery_installed(app_configs=None, **kwargs) -> list:
    """With the broker set, Celery must be importable (it is sent to at retry)."""
    if settings.SWITCHBOARD_CELERY_BROKER_URL and importlib.util.find_spec("celery") is None:
        return [
            checks.Error(
                "SWITCHBOARD_CELERY_BROKER_URL is set but the celery package is not installed",
                hint="pip install -r requirements/base.txt",
                id="switchboard.E101",
            )
        ]
    return []

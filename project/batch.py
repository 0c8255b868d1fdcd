"""Many reports in one request: for workers that report often.

`POST /api/v1/sessions/<id>/batch` carries task reports (as `PATCH
/tasks/<id>`), output chunks and steps (as `POST /tasks/<id>/output`) and log
lines (as `POST /sessions/<id>/logs`) of one session, applied in one
transaction in that order: all of it or, when one item is refused, none of it
(a 400 naming the item, as `tasks.3.progress`). A model streaming a hundred
tokens a second then costs a few requests a second; the Python client's
`Reporter` coalesces for it. It lives here, above both apps, because it
writes through both.
"""

from contextlib import contextmanager

from ninja import Router, Schema
from pydantic import Field

from live import dbthreads
from live.auth import ASYNC_AUTH
from live.errors import Refused
from live.validation import Input
from logs_app import services as log_services
from logs_app.schemas import LogEntryIn
from sessions_app import access, output, recording
from sessions_app.api import ERRORS, may_change, report_fields
from sessions_app.locks import Check
from sessions_app.reports import Reports
from sessions_app.schemas import OutputIn, TaskPatch

router = Router(tags=["batch"])
ID = Field(ge=1, le=2**62)


PROGRESS = {"id", "progress", "message", "details"}


class TaskReport(TaskPatch):
    id: int = ID


class OutputItem(OutputIn):
    task_id: int = ID


class BatchIn(Input):
    tasks: list[TaskReport] = Field([], max_length=1000, description="reports, as PATCH /tasks")
    output: list[OutputItem] = Field([], max_length=1000, description="chunks and steps")
    logs: list[LogEntryIn] = Field([], max_length=10000, description="log lines")


class BatchOut(Schema):
    tasks: int
    output: int
    logs_stored: int
    logs_skipped: int
    seq: int | None


@contextmanager
def named(prefix: str):
    """A refusal inside names the item: `status` becomes `tasks.3.status`."""
    try:
        yield
    except Refused as error:
        raise Refused(
            error.message, field=prefix + (error.field or "id"), code=error.code
        ) from None


def _apply(session_id: int, batch: BatchIn, check: Check | None = None) -> dict:
    wanted = {item.id for item in batch.tasks} | {item.task_id for item in batch.output}
    wanted |= {entry.task_id for entry in batch.logs if entry.task_id is not None}
    with recording.service_write():
        # The reports and the output: the session and its tasks locked (one
        # lock order: the session, its tasks by id, the event lock), changed
        # in memory, written in a few statements (sessions_app.reports).
        # Progress alone (the common batch) reads and writes a few columns.
        light = all(set(report.model_fields_set) <= PROGRESS for report in batch.tasks)
        with Reports.of_session(session_id, wanted, check, light) as reports:
            for part, items, key in (
                ("tasks", batch.tasks, "id"),
                ("output", batch.output, "task_id"),
                ("logs", batch.logs, "task_id"),
            ):
                access.refuse_foreign_tasks(
                    set(reports.tasks),
                    ((f"{part}.{n}.{key}", getattr(item, key)) for n, item in enumerate(items)),
                )
            for index, report in enumerate(batch.tasks):
                fields = report_fields(report, prefix=f"tasks.{index}.")
                fields.pop("id")
                with named(f"tasks.{index}."):
                    reports.report(report.id, **fields)
            # Output a retry brings again (a uid stored before) is not stored twice.
            seen = output.keys_seen(batch.output)
            keys = []
            for index, item in enumerate(batch.output):
                if item.uid is not None:
                    if (item.task_id, item.uid) in seen:
                        continue
                    seen.add((item.task_id, item.uid))
                with named(f"output.{index}."):
                    if item.status is not None:
                        fields = output.step_fields(item.status, item.message, item.data)
                    else:
                        fields = output.chunk_fields(item.chunk, item.final)
                    event = reports.output(item.task_id, fields)
                if item.uid is not None:
                    keys.append((item.task_id, item.uid, event))
        output.keep_keys(keys)
        stored = []
        if batch.logs:
            entries = [entry.model_dump() for entry in batch.logs]
            stored = log_services.append_entries(session_id, entries)
        # The seq of the batch's newest event.
        seq = max([reports.last_seq, *(entry.seq for entry in stored)]) or None
    return {
        "tasks": len(batch.tasks),
        "output": len(batch.output),
        "logs_stored": len(stored),
        "logs_skipped": len(batch.logs) - len(stored),
        "seq": seq,
    }


@router.post(
    "/sessions/{int:session_id}/batch", response={200: BatchOut, **ERRORS}, auth=ASYNC_AUTH
)
async def post_batch(request, session_id: int, payload: BatchIn):
    """Task reports, output and log lines of one session in one transaction:
    all applied, in that order, or none (a 400 naming the refused item)."""

    def apply() -> dict:
        return _apply(session_id, payload, may_change(request, "session"))

    return await dbthreads.run(apply)

"""A row's JSON form (as_json: the API's answers and the events' data) and its
output schema (the API's documentation) name the same fields, and the one
validates against the other: neither can drift from the other unseen."""

import pytest

from logs_app import services as log_services
from logs_app.models import LogEntry
from logs_app.schemas import LogEntryOut
from sessions_app import services
from sessions_app.schemas import SessionOut, TaskOut


@pytest.mark.django_db
def test_each_rows_json_has_exactly_its_schemas_fields_and_validates():
    session = services.create_session(name="shapes", external_id="s-1", metadata={"a": 1})[0]
    task = services.create_task(session.pk, name="t", stale_after=30)[0]
    task = services.update_task(task.pk, status="running", progress=40, details={"k": [1]})
    log_services.append_entries(session.pk, [{"message": "hi", "task_id": task.pk, "uid": "u"}])
    session.refresh_from_db()
    entry = LogEntry.objects.get()

    for row, schema in ((session, SessionOut), (task, TaskOut), (entry, LogEntryOut)):
        shown = row.as_json()
        assert list(shown) == list(schema.model_fields), schema.__name__
        assert schema.model_validate(shown).model_dump() == shown, schema.__name__

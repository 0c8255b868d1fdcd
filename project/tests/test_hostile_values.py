"""Values Python takes and PostgreSQL refuses: a 400 naming the field at the
edge, never a 500 and never a stored value that breaks later reads. They run on
both databases; PostgreSQL is where they used to break."""

import json

import pytest
from django.test import Client

from sessions_app import eventfiles

pytestmark = pytest.mark.django_db(transaction=True)


class Api:
    def __init__(self, token: str) -> None:
        self.http = Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def send(self, method: str, path: str, raw: str):
        response = getattr(self.http, method.lower())(
            f"/api/v1/{path}", data=raw, content_type="application/json", headers=self.headers
        )
        return response.status_code, response.json()

    def get(self, path: str, **params):
        response = self.http.get(f"/api/v1/{path}", data=params, headers=self.headers)
        return response.status_code, response.json()


@pytest.fixture
def api(worker_token):
    return Api(worker_token)


@pytest.fixture
def session(api):
    return api.send("POST", "sessions", json.dumps({"name": "target"}))[1]


@pytest.mark.parametrize(
    "ts",
    ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00", "2026-01-01T00:00:00+16:00"],
)
def test_a_log_line_with_a_time_the_database_cannot_keep_is_refused(api, session, ts):
    body = json.dumps({"entries": [{"message": "x"}, {"message": "y", "ts": ts}]})
    status, answer = api.send("POST", f"sessions/{session['id']}/logs", body)
    assert status == 400 and "entries.1.ts" in answer["errors"], answer
    # Nothing was stored, and the session's log still reads.
    status, page = api.get(f"sessions/{session['id']}/logs")
    assert status == 200 and page["entries"] == []
    assert api.get("events")[0] == 200


@pytest.mark.parametrize(
    "method, path, raw, field",
    [
        ("POST", "sessions", '{"name": "a\\u0000b"}', "name"),
        ("POST", "sessions", '{"name": "n", "metadata": {"k\\u0000": 1}}', "metadata"),
        ("POST", "sessions", '{"name": "n", "metadata": {"k": NaN}}', "metadata"),
        ("POST", "sessions", '{"name": "n", "metadata": {"k": [1e999]}}', "metadata"),
        ("POST", "sessions", '{"name": "n", "colour": "red"}', "colour"),
    ],
)
def test_bodies_with_values_the_database_refuses_are_400_naming_the_field(
    api, method, path, raw, field
):
    status, answer = api.send(method, path, raw)
    assert status == 400 and field in answer["errors"], answer


def test_task_reports_with_hostile_values_or_unknown_fields_are_400(api, session):
    task = api.send("POST", f"sessions/{session['id']}/tasks", '{"name": "t"}')[1]
    path = f"tasks/{task['id']}"
    for raw, field in (
        ('{"progres": 50}', "progres"),
        ('{"progress": NaN}', "progress"),
        ('{"progress": 1e999}', "progress"),
        ('{"details": {"x": Infinity}}', "details"),
        ('{"message": "\\u0000"}', "message"),
        ('{"result": {"deep": ["\\u0000"]}}', "result"),
    ):
        status, answer = api.send("PATCH", path, raw)
        assert status == 400 and field in answer["errors"], (raw, answer)
    for raw in ("null", "0.0", "[]"):
        assert api.send("PATCH", path, raw)[0] == 400, raw
    status, output = api.send("POST", f"{path}/output", '{"chunk": "a\\u0000"}')
    assert status == 400 and "chunk" in output["errors"]
    assert api.get(path)[1]["progress"] == 0.0  # nothing changed


def test_queries_with_hostile_values_are_400_and_huge_ids_404(api, session):
    for path, params in (
        (f"sessions/{session['id']}/logs", {"q": "\x00"}),
        (f"sessions/{session['id']}/logs", {"since": "2026-01-01T00:00:00+16:00"}),
        (f"sessions/{session['id']}/logs", {"before": "99999999999999999999"}),
        ("sessions", {"offset": "99999999999999999999"}),
        ("sessions", {"q": "\x00"}),
        ("events", {"since": "99999999999999999999"}),
    ):
        status, answer = api.get(path, **params)
        assert status == 400, (path, params, answer)
    status, _ = api.get("sessions/99999999999999999999")
    assert status == 404


def test_replay_refuses_a_line_whose_time_or_text_the_database_cannot_keep():
    lines = [
        '{"event": "session.update", "session": "s", "data": {"name": "n"}}',
        '{"event": "session.update", "session": "s", "ts": "9999-12-31T23:59:00-05:00", "data": {}}',
    ]
    with pytest.raises(eventfiles.ReplayError, match="line 2: ts"):
        eventfiles.parse_lines(iter(lines))
    chunk = '{"event": "task.output", "session": "s", "task": "t", "data": {"chunk": "\\u0000"}}'
    with pytest.raises(eventfiles.ReplayError, match="line 1: data.chunk"):
        eventfiles.parse_lines(iter([chunk]))


SURROGATE = '"\\udc00"'


def read_stream(response) -> str:
    from asgiref.sync import async_to_sync

    async def collect():
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(collect)().decode()


def test_lone_surrogates_are_400_naming_the_field_on_both_databases(api, session):
    task = api.send("POST", f"sessions/{session['id']}/tasks", '{"name": "t"}')[1]
    for method, path, raw, field in (
        ("POST", "sessions", '{"name": ' + SURROGATE + "}", "name"),
        ("POST", "sessions", '{"name": "n", "metadata": {"k": ' + SURROGATE + "}}", "metadata"),
        ("PATCH", f"tasks/{task['id']}", '{"details": {"k": ' + SURROGATE + "}}", "details"),
        ("PATCH", f"tasks/{task['id']}", '{"message": "a\\ud800b"}', "message"),
        ("POST", f"tasks/{task['id']}/output", '{"chunk": ' + SURROGATE + "}", "chunk"),
        (
            "POST",
            f"tasks/{task['id']}/output",
            '{"status": "thinking", "data": {"k": ' + SURROGATE + "}}",
            "data",
        ),
        (
            "POST",
            f"sessions/{session['id']}/logs",
            '{"entries": [{"message": ' + SURROGATE + "}]}",
            "entries.0.message",
        ),
        (
            "POST",
            f"sessions/{session['id']}/batch",
            '{"logs": [{"message": ' + SURROGATE + "}]}",
            "logs.0.message",
        ),
    ):
        status, answer = api.send(method, path, raw)
        assert status == 400 and field in answer["errors"], (path, raw, answer)
    # Nothing was stored, and every read still works.
    assert api.get(f"tasks/{task['id']}")[1]["details"] == {}
    assert api.get(f"sessions/{session['id']}/logs")[1]["entries"] == []
    assert api.get("events")[0] == 200


def test_values_too_large_for_a_frame_are_400_naming_the_field(api, session):
    task = api.send("POST", f"sessions/{session['id']}/tasks", '{"name": "t"}')[1]
    big = json.dumps("m" * 1_100_000)
    for method, path, raw, field in (
        ("POST", "sessions", '{"name": "n", "metadata": {"db": ' + big + "}}", "metadata"),
        ("PATCH", f"tasks/{task['id']}", '{"details": {"k": ' + big + "}}", "details"),
        ("PATCH", f"tasks/{task['id']}", '{"message": ' + big + "}", "message"),
        ("PATCH", f"tasks/{task['id']}", '{"result": ' + big + "}", "result"),
        ("POST", f"tasks/{task['id']}/output", '{"chunk": ' + big + "}", "chunk"),
        (
            "POST",
            f"tasks/{task['id']}/output",
            '{"status": "x", "data": {"k": ' + big + "}}",
            "data",
        ),
        (
            "POST",
            f"sessions/{session['id']}/logs",
            '{"entries": [{"message": "ok"}, {"message": ' + big + "}]}",
            "entries.1.message",
        ),
    ):
        status, answer = api.send(method, path, raw)
        assert status == 400 and field in answer["errors"], (path, answer["errors"])
    # Within the limits (64 KiB of metadata, 256 KiB a log line): stored.
    status, _ = api.send(
        "POST", "sessions", json.dumps({"name": "n", "metadata": {"k": "m" * 60_000}})
    )
    assert status == 201
    line = {"message": "é" * 120_000}  # 240,000 bytes in UTF-8
    assert (
        api.send("POST", f"sessions/{session['id']}/logs", json.dumps({"entries": [line]}))[0]
        == 201
    )


def test_times_without_an_offset_are_taken_as_utc_everywhere(api, session, admin_user):
    from django.test import Client as Browser

    from logs_app.models import LogEntry
    from sessions_app import eventfiles

    path = f"sessions/{session['id']}/logs"
    body = {"entries": [{"message": "naive", "ts": "2026-11-21T10:00:00"}]}
    status, answer = api.send("POST", path, json.dumps(body))
    assert status == 201, answer
    assert LogEntry.objects.get(message="naive").ts.isoformat() == "2026-11-21T10:00:00+00:00"
    batch = {"logs": [{"message": "batched", "ts": "2026-11-21T11:00:00.5"}]}
    status, answer = api.send("POST", f"sessions/{session['id']}/batch", json.dumps(batch))
    assert status == 200, answer
    for params, messages in (
        ({"since": "2026-11-21T10:30:00"}, ["batched"]),
        ({"until": "2026-11-21T10:30"}, ["naive"]),
        ({"since": "2026-11-21", "until": "2026-11-22"}, ["naive", "batched"]),
        ({"since": "2026-11-22"}, []),
    ):
        status, page = api.get(path, **params)
        assert status == 200, (params, page)
        assert [e["message"] for e in page["entries"]] == messages, params
    browser = Browser()
    browser.force_login(admin_user)
    download = f"/sessions/{session['id']}/logs/download"
    response = browser.get(download, {"since": "2026-11-21T10:30:00"})
    assert response.status_code == 200
    assert read_stream(response).count("\n") == 1
    assert browser.get(download, {"since": "yesterday"}).status_code == 400
    line = {
        "event": "log.append",
        "session": session["id"],
        "data": {"entries": [{"message": "replayed", "ts": "2026-11-21T12:00:00"}]},
    }
    eventfiles.Replay(eventfiles.parse_lines(iter([json.dumps(line)])), speed=0).run()
    assert LogEntry.objects.get(message="replayed").ts.isoformat() == "2026-11-21T12:00:00+00:00"


def test_a_value_the_database_cannot_hold_is_answered_404_not_500(rf):
    from django.db import DataError

    from project.api import out_of_range

    response = out_of_range(rf.get("/api/v1/sessions/1"), DataError("out of range"))
    assert response.status_code == 404
    assert json.loads(response.content) == {"detail": "not found: a value is out of range"}

"""The HTTP API for sessions, tasks, events and stats, through Django's test client."""

import json

import pytest
from django.test import Client

from live.models import Event
from sessions_app.models import Session, Task

pytestmark = pytest.mark.django_db


class Api:
    def __init__(self, token: str | None = None) -> None:
        self.http = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, body=None, **params):
        kwargs = {"headers": self.headers}
        if body is not None:
            kwargs.update(data=json.dumps(body) if not isinstance(body, str) else body)
            kwargs["content_type"] = "application/json"
        elif params:
            kwargs["data"] = params
        response = getattr(self.http, method.lower())(f"/api/v1/{path}", **kwargs)
        return response.status_code, (response.json() if response.content else None)


@pytest.fixture
def api(admin_token):
    return Api(admin_token)


@pytest.fixture
def worker(worker_token):
    return Api(worker_token)


def test_create_session_answers_201_with_counts_and_string_ids(api):
    status, body = api.call("POST", "sessions", {"name": "import", "metadata": {"k": 1}})
    assert status == 201
    assert body["id"] == str(Session.objects.get().pk)
    assert body["total_tasks"] == 0 and body["completed_tasks"] == 0
    assert body["metadata"] == {"k": 1} and body["status"] == "pending"
    assert Event.objects.filter(kind="session.update").count() == 1


def test_create_session_with_a_known_external_id_returns_the_same_session(api):
    first = api.call("POST", "sessions", {"name": "a", "external_id": "job-1"})
    again = api.call("POST", "sessions", {"name": "a", "external_id": "job-1"})
    assert first[0] == 201 and again[0] == 200
    assert first[1]["id"] == again[1]["id"] and Session.objects.count() == 1


def test_another_users_external_id_names_a_new_session_of_ones_own(
    worker, other_token, api, django_user_model
):
    """External ids are unique per owner: Bob using Alice's gets a session of
    his own (and learns nothing of hers); staff, who may change every session,
    have a namespace of their own too. Alice's retry still finds hers."""
    alice = {"name": "alice's", "metadata": {"db_password": "alice-secret"}, "external_id": "j"}
    status, hers = worker.call("POST", "sessions", alice)
    assert status == 201
    status, his = Api(other_token).call("POST", "sessions", {"name": "bob's", "external_id": "j"})
    assert status == 201
    assert his["id"] != hers["id"] and his["metadata"] == {} and his["name"] == "bob's"
    assert "alice-secret" not in json.dumps(his)
    status, staff = api.call("POST", "sessions", {"name": "admin's", "external_id": "j"})
    assert status == 201 and staff["id"] not in (hers["id"], his["id"])
    assert "alice-secret" not in json.dumps(staff)
    status, again = worker.call("POST", "sessions", {"name": "retry", "external_id": "j"})
    assert status == 200 and again == hers
    status, again = Api(other_token).call("POST", "sessions", {"name": "x", "external_id": "j"})
    assert status == 200 and again["id"] == his["id"]
    owners = Session.objects.filter(external_id="j").values_list("owner__username", flat=True)
    assert sorted(owners) == ["admin", "other", "worker"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x", "metadata": [1]}, "metadata"),
        ({"name": "x", "status": "sleeping"}, "status"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_create_session_with_bad_fields_is_400_naming_them(api, body, field):
    status, answer = api.call("POST", "sessions", body)
    assert status == 400
    assert field in answer["errors"], answer
    assert Session.objects.count() == 0


def test_a_body_that_is_not_json_is_400(api):
    status, _ = api.call("POST", "sessions", "{nope")
    assert status == 400


def test_no_identity_is_401_and_a_bad_token_too(db):
    assert Api().call("GET", "sessions")[0] == 401
    assert Api("sb_wrong").call("GET", "sessions")[0] == 401


def test_another_users_session_is_404_and_an_unchangeable_one_403(
    worker, other_token, django_user_model
):
    _, mine = worker.call("POST", "sessions", {"name": "mine"})
    _, task = worker.call("POST", f"sessions/{mine['id']}/tasks", {"name": "t"})
    other = Api(other_token)
    assert other.call("GET", f"sessions/{mine['id']}")[0] == 404
    assert other.call("PATCH", f"sessions/{mine['id']}", {"status": "running"})[0] == 404
    assert other.call("POST", f"sessions/{mine['id']}/tasks", {"name": "t"})[0] == 404
    # A progress report is checked under the task's lock: the same answers.
    assert other.call("PATCH", f"tasks/{task['id']}", {"progress": 50})[0] == 404
    assert other.call("POST", f"tasks/{task['id']}/output", {"chunk": "x"})[0] == 404
    assert other.call("GET", "sessions")[1]["results"] == []
    # A viewer who may see everything but change nothing gets 403 on writes.
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.get(username="other")
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_session", content_type__app_label="sessions_app")
    )
    other = Api(other_token)
    assert other.call("GET", f"sessions/{mine['id']}")[0] == 200
    assert other.call("PATCH", f"sessions/{mine['id']}", {"status": "running"})[0] == 403
    assert other.call("PATCH", f"tasks/{task['id']}", {"progress": 50})[0] == 403
    assert other.call("POST", f"tasks/{task['id']}/output", {"chunk": "x"})[0] == 403
    step = {"status": "thinking"}
    assert other.call("POST", f"tasks/{task['id']}/output", step)[0] == 403
    assert other.call("PATCH", "tasks/99999999", {"progress": 50})[0] == 404
    assert worker.call("GET", f"tasks/{task['id']}")[1]["progress"] == 0
    assert not Event.objects.filter(kind__in=["progress.update", "task.output"]).exists()


def test_session_list_filters_by_status_and_pages(api):
    for name in ("a", "b", "c"):
        api.call("POST", "sessions", {"name": name})
    api.call("PATCH", f"sessions/{Session.objects.get(name='b').pk}", {"status": "running"})
    status, page = api.call("GET", "sessions", status="running")
    assert status == 200 and [s["name"] for s in page["results"]] == ["b"]
    status, page = api.call("GET", "sessions", limit=2)
    assert [s["name"] for s in page["results"]] == ["c", "b"] and page["next_offset"] == 2
    assert page["count"] == 3
    assert api.call("GET", "sessions", status="bogus")[0] == 400
    assert api.call("GET", "sessions", limit=0)[0] == 400


def test_a_task_reports_progress_and_the_session_counts_follow(api):
    _, session = api.call("POST", "sessions", {"name": "s"})
    _, task = api.call("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
    status, body = api.call(
        "PATCH", f"tasks/{task['id']}", {"status": "running", "progress": 33.3, "message": "m"}
    )
    assert status == 200 and body["progress"] == 33.3 and body["started_at"]
    assert api.call("GET", f"sessions/{session['id']}")[1]["status"] == "running"
    api.call("PATCH", f"tasks/{task['id']}", {"status": "completed", "result": {"rows": 3}})
    _, session = api.call("GET", f"sessions/{session['id']}")
    assert (session["completed_tasks"], session["total_tasks"]) == (1, 1)
    last = Event.objects.filter(kind="session.update").last()
    assert last.data["completed_tasks"] == 1


def test_every_progress_report_records_one_progress_update_even_unchanged(api):
    _, session = api.call("POST", "sessions", {"name": "s"})
    _, task = api.call("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
    for _ in range(3):
        api.call("PATCH", f"tasks/{task['id']}", {"progress": 10})
    assert Event.objects.filter(kind="progress.update").count() == 3
    # The create, and the start: the first report found the task pending.
    assert Event.objects.filter(kind="task.update").count() == 2
    assert api.call("GET", f"tasks/{task['id']}")[1]["status"] == "running"
    assert api.call("GET", f"sessions/{session['id']}")[1]["status"] == "running"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"progress": 101}, "progress"),
        ({"progress": -1}, "progress"),
        ({"progress": "lots"}, "progress"),
        ({"status": "paused"}, "status"),
        ({"status": None}, "status"),
        ({"details": "x"}, "details"),
        ({"message": 3}, "message"),
    ],
)
def test_bad_task_reports_are_400_naming_the_field(api, body, field):
    _, session = api.call("POST", "sessions", {"name": "s"})
    _, task = api.call("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
    status, answer = api.call("PATCH", f"tasks/{task['id']}", body)
    assert status == 400 and field in answer["errors"], answer


def test_an_ended_task_does_not_run_again_until_retried(api):
    _, session = api.call("POST", "sessions", {"name": "s"})
    _, task = api.call("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
    api.call("PATCH", f"tasks/{task['id']}", {"status": "failed", "error": "boom"})
    status, answer = api.call("PATCH", f"tasks/{task['id']}", {"status": "running"})
    assert status == 400 and "retry" in answer["errors"]["status"][0]
    status, retried = api.call("POST", f"tasks/{task['id']}/retry")
    assert status == 200 and retried["attempt"] == 2 and retried["status"] == "pending"
    assert api.call("PATCH", f"tasks/{task['id']}", {"status": "running"})[0] == 200


def test_cancel_pending_running_and_ended_tasks(api):
    _, session = api.call("POST", "sessions", {"name": "s"})
    _, pending = api.call("POST", f"sessions/{session['id']}/tasks", {"name": "p"})
    _, running = api.call("POST", f"sessions/{session['id']}/tasks", {"name": "r"})
    api.call("PATCH", f"tasks/{running['id']}", {"status": "running"})
    _, answer = api.call("POST", f"tasks/{pending['id']}/cancel")
    assert answer["changed"] and answer["task"]["status"] == "cancelled"
    _, answer = api.call("POST", f"tasks/{running['id']}/cancel")
    assert answer["task"]["status"] == "running" and answer["task"]["cancel_requested"]
    # The worker sees the request in every answer about the task.
    assert api.call("PATCH", f"tasks/{running['id']}", {"progress": 5})[1]["cancel_requested"]
    _, answer = api.call("POST", f"tasks/{pending['id']}/cancel")
    assert answer["changed"] is False
    assert api.call("POST", "tasks/999999/cancel")[0] == 404


def test_streamed_output_is_recorded_in_order(api):
    _, session = api.call("POST", "sessions", {"name": "s"})
    _, task = api.call("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
    for chunk in ("Hel", "lo ", "world"):
        assert api.call("POST", f"tasks/{task['id']}/output", {"chunk": chunk})[0] == 201
    api.call("POST", f"tasks/{task['id']}/output", {"chunk": "", "final": True})
    status, output = api.call("GET", f"tasks/{task['id']}/output")
    assert status == 200 and output == {
        "text": "Hello world",
        "final": True,
        "truncated": False,
        "steps": [],
    }
    assert api.call("POST", f"tasks/{task['id']}/output", {"final": True})[0] == 400


def test_task_list_filters_by_session_and_status(api):
    _, one = api.call("POST", "sessions", {"name": "one"})
    _, two = api.call("POST", "sessions", {"name": "two"})
    api.call("POST", f"sessions/{one['id']}/tasks", {"name": "a"})
    _, b = api.call("POST", f"sessions/{two['id']}/tasks", {"name": "b"})
    api.call("PATCH", f"tasks/{b['id']}", {"status": "running"})
    assert [t["name"] for t in api.call("GET", "tasks", session=one["id"])[1]["results"]] == ["a"]
    assert [t["name"] for t in api.call("GET", "tasks", status="running")[1]["results"]] == ["b"]
    status, answer = api.call("GET", "tasks/424242")
    assert (status, answer) == (404, {"detail": "no task 424242 that you can see"})
    status, answer = api.call("GET", "sessions/424242")
    assert (status, answer) == (404, {"detail": "no session 424242 that you can see"})
    # A parameter the list does not take is refused by name, not ignored.
    status, answer = api.call("GET", "tasks", session_id=one["id"])
    assert status == 400 and "session_id" in answer["errors"], answer
    status, answer = api.call("GET", "sessions", state="running")
    assert status == 400 and "state" in answer["errors"], answer


def test_events_endpoint_pages_a_channel_for_polling_clients(api):
    _, session = api.call("POST", "sessions", {"name": "s"})
    _, task = api.call("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
    for n in range(5):
        api.call("PATCH", f"tasks/{task['id']}", {"progress": n})
    channel = f"session:{session['id']}"
    status, first = api.call("GET", "events", channel=channel, limit=3)
    assert status == 200 and len(first["results"]) == 3 and first["has_more"]
    _, rest = api.call("GET", "events", channel=channel, since=first["seq"])
    seqs = [e["seq"] for e in first["results"] + rest["results"]]
    assert seqs == sorted(set(seqs)) and not rest["has_more"]
    assert all(e["channel"] == channel and e["ts"] for e in rest["results"])
    assert [e["data"]["progress"] for e in rest["results"] if e["event"] == "progress.update"][
        -1
    ] == 4
    assert api.call("GET", "events", channel="nope")[0] == 400
    assert api.call("GET", "events", channel="session:999999")[0] == 400
    assert api.call("GET", "events", since=10**9)[1]["reset"] is True


def test_stats_and_the_openapi_schema(api):
    status, stats = api.call("GET", "stats")
    assert status == 200
    assert {"connections", "connections_total", "subscriptions", "messages_sent"} <= set(stats)
    assert "events_per_second" in stats
    schema = Client().get("/api/v1/openapi.json").json()
    assert "/api/v1/sessions/{session_id}/logs" in schema["paths"]
    assert schema["components"]["securitySchemes"]


def test_stats_show_others_only_their_own_figures(api, worker, worker_user):
    from sessions_app import services

    mine = services.create_session(name="mine", owner=worker_user)[0]
    services.create_session(name="not yours")
    _, everything = api.call("GET", "stats")
    assert everything["processes"] and everything["last_seq"] > 0
    status, narrowed = worker.call("GET", "stats")
    assert status == 200
    mine_seq = Event.objects.filter(session_id=mine.pk).order_by("-id").first().pk
    assert narrowed["last_seq"] == mine_seq < everything["last_seq"]
    assert narrowed["processes"] == [] and narrowed["process"] == ""
    assert "events" not in json.dumps(narrowed["processes"])


def test_a_browser_session_needs_csrf_on_writes(admin_user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    assert browser.get("/api/v1/sessions").status_code == 200
    response = browser.post("/api/v1/sessions", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert Task.objects.count() == 0


def test_the_snapshot_endpoint_answers_what_subscribed_would(api, worker, other_token):
    _, session = api.call("POST", "sessions", {"name": "s"})
    api.call("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
    status, body = api.call("GET", "snapshot", channel=f"session:{session['id']}")
    assert status == 200 and body["channel"] == f"session:{session['id']}"
    assert [t["name"] for t in body["snapshot"]["tasks"]] == ["t"]
    _, events = api.call("GET", "events", channel=f"session:{session['id']}")
    assert body["seq"] == events["seq"]
    status, tasks = api.call("GET", "snapshot", channel="tasks")
    assert status == 200 and tasks["snapshot"]["counts"] == {"pending": 1}
    assert worker.call("GET", "snapshot", channel="tasks")[1]["snapshot"]["tasks"] == []
    assert Api(other_token).call("GET", "snapshot", channel="system")[0] == 403
    assert api.call("GET", "snapshot", channel=f"logs:{session['id']}", level="LOUD")[0] == 400


def test_a_write_with_a_bad_token_is_401_not_a_csrf_failure(db):
    status, body = Api("sb_not-a-token").call("POST", "sessions", {"name": "x"})
    assert status == 401

"""`external_id` on the session and task lists: exactly that key, among what one may see."""

import pytest

from sessions_app.tests.test_api import Api

pytestmark = pytest.mark.django_db


def test_the_lists_find_sessions_and_tasks_by_their_exact_external_id(admin_token, worker_token):
    api, worker = Api(admin_token), Api(worker_token)
    _, mine = worker.call("POST", "sessions", {"name": "run", "external_id": "celery-1"})
    worker.call("POST", "sessions", {"name": "other", "external_id": "celery-10"})
    _, task = worker.call(
        "POST", f"sessions/{mine['id']}/tasks", {"name": "t", "external_id": "c-1"}
    )
    worker.call("POST", f"sessions/{mine['id']}/tasks", {"name": "u", "external_id": "c-11"})
    status, found = worker.call("GET", "sessions", external_id="celery-1")
    assert status == 200 and [s["id"] for s in found["results"]] == [mine["id"]]
    status, found = worker.call("GET", "tasks", external_id="c-1")
    assert status == 200 and [t["id"] for t in found["results"]] == [task["id"]]
    assert worker.call("GET", "tasks", external_id="nothing")[1]["results"] == []
    # Another user's keys name nothing of theirs; staff see every session.
    _, others = Api(admin_token).call("POST", "sessions", {"name": "x", "external_id": "adm"})
    assert worker.call("GET", "sessions", external_id="adm")[1]["results"] == []
    assert [s["id"] for s in api.call("GET", "sessions", external_id="adm")[1]["results"]] == [
        others["id"]
    ]
    status, answer = worker.call("GET", "sessions", external_id="x" * 201)
    assert status == 400 and "external_id" in answer["errors"]

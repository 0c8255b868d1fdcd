"""A Celery group and a chord on a real worker (Redis as the broker and the
result backend) against a real server: each canvas is one session, its
external_id the root's id, with a task for each Celery task."""

import pytest
from celery import chord, group

from tests.test_celery import BROKER, Worker, broker, wait

__all__ = ["broker"]  # the fixture, for the tests here

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def celery(broker, fresh_server, admin_token):
    srv = fresh_server(SWITCHBOARD_SESSION_SETTLE="2")
    worker = Worker(
        srv,
        admin_token,
        app="tests.celery_canvas_tasks",
        pool="solo",
        concurrency=1,
        backend=BROKER,
    )
    yield srv, worker
    worker.stop()


def ended(api, celery_id: str) -> dict | None:
    found = api.request("GET", "tasks", params={"external_id": celery_id})["results"]
    if found and found[0]["status"] in ("completed", "failed", "cancelled"):
        return found[0]
    return None


def placed(api, tasks: list[dict]) -> str:
    """Which session (by its external_id) each task went to, for the failure's message."""
    keys = {t["session_id"]: api.get_session(t["session_id"])["external_id"] for t in tasks}
    return "; ".join(f"task {t['external_id']} in session {keys[t['session_id']]}" for t in tasks)


# Celery gives a group or chord applied by a client (not from inside a task)
# no common root_id: each header task is its own root, and a chord's body has
# the last header task's. connect() keys them by the group's id instead.


def test_a_group_is_one_session_keyed_by_its_root(celery, admin_token):
    srv, worker = celery
    api = srv.client(admin_token)
    result = group(worker.sig("sbcanvas.square", n) for n in (1, 2, 3)).apply_async()
    ids = [child.id for child in result.results]
    assert result.get(timeout=30) == [1, 4, 9]
    tasks = [wait(lambda i=i: ended(api, i), 30, worker.logs) for i in ids]
    assert [t["result"] for t in tasks] == [1, 4, 9]
    assert len({t["session_id"] for t in tasks}) == 1, placed(api, tasks)
    session = api.get_session(tasks[0]["session_id"])
    # The root: the group's first task (as a chain's), or the group itself.
    assert session["external_id"] in (ids[0], result.id)
    assert (session["name"], session["total_tasks"]) == ("sbcanvas.square", 3)
    wait(lambda: api.get_session(session["id"])["status"] == "completed")


def test_a_chord_is_one_session_keyed_by_its_root(celery, admin_token):
    srv, worker = celery
    api = srv.client(admin_token)
    header = [worker.sig("sbcanvas.square", n) for n in (1, 2, 3)]
    result = chord(header)(worker.sig("sbcanvas.total"))
    assert result.get(timeout=30) == 14
    ids = [child.id for child in result.parent.results] + [result.id]
    tasks = [wait(lambda i=i: ended(api, i), 30, worker.logs) for i in ids]
    assert [t["result"] for t in tasks] == [1, 4, 9, 14]
    assert len({t["session_id"] for t in tasks}) == 1, placed(api, tasks)
    session = api.get_session(tasks[0]["session_id"])
    assert session["external_id"] in (ids[0], result.parent.id)
    assert session["total_tasks"] == 4
    wait(lambda: api.get_session(session["id"])["status"] == "completed")

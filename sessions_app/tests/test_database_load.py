"""The database under concurrent writers, through real daphne processes:
bounded connections, idempotent creates under races, no deadlock."""

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from live.errors import Refused
from live.tests import wsclient as wc

pytestmark = pytest.mark.timeout(240)


def call(base: str, method: str, path: str, token: str, body=None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/api/v1/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, {"body": error.read().decode(errors="replace")[:300]}


def postgres() -> bool:
    return connection.vendor == "postgresql"


def server_connections(pid: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [f"switchboard-{pid}"],
        )
        return cursor.fetchone()[0]


@pytest.mark.skipif("not postgres()", reason="connection pooling is PostgreSQL's")
def test_a_burst_of_requests_keeps_a_bounded_pool_of_connections(fresh_server, admin_token):
    server = fresh_server(SWITCHBOARD_DB_POOL_MAX="6")
    with ThreadPoolExecutor(30) as pool:
        answers = list(
            pool.map(lambda n: call(server.url, "GET", "sessions", admin_token)[0], range(150))
        )
    assert answers == [200] * 150
    held = server_connections(server.process.pid)
    assert 1 <= held <= 6, held
    time.sleep(1)
    assert server_connections(server.process.pid) <= 6


def race(bases: list[str], token: str, method: str, path: str, body: dict, per_server: int):
    """The same request from several threads on several servers at one moment."""
    start = threading.Barrier(per_server * len(bases))

    def one(base):
        start.wait()
        return call(base, method, path, token, body)

    with ThreadPoolExecutor(per_server * len(bases)) as pool:
        return list(pool.map(one, [b for b in bases for _ in range(per_server)]))


def test_simultaneous_creates_with_one_external_id_give_one_object(live, fresh_server, admin_token):
    bases = [live.url, fresh_server().url]
    for round_ in range(5):
        answers = race(bases, admin_token, "POST", "sessions",
                       {"name": "raced", "external_id": f"race-{round_}"}, per_server=4)  # fmt: skip
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200] * 7 + [201], answers
        assert len({body["id"] for _, body in answers}) == 1
        session_id = answers[0][1]["id"]
        answers = race(bases, admin_token, "POST", f"sessions/{session_id}/tasks",
                       {"name": "raced", "external_id": "the task"}, per_server=4)  # fmt: skip
        assert sorted(status for status, _ in answers) == [200] * 7 + [201], answers
        assert len({body["id"] for _, body in answers}) == 1


def test_two_users_racing_one_external_id_across_processes_each_get_their_own(
    live, fresh_server, worker_token, other_token
):
    """Alice and Bob create a session with one external_id at one moment, four
    requests each, across two server processes: each gets a session of their
    own, created once, and never sees the other's metadata."""
    bases = [live.url, fresh_server().url]
    tokens = {"alice": worker_token, "bob": other_token}
    for round_ in range(20):
        start = threading.Barrier(8)

        def one(who, base, round_=round_, start=start):
            body = {"name": who, "external_id": f"race-{round_}", "metadata": {"secret": who}}
            start.wait()
            return who, *call(base, "POST", "sessions", tokens[who], body)

        askers = [(who, base) for who in tokens for base in bases for _ in range(2)]
        with ThreadPoolExecutor(len(askers)) as pool:
            answers = list(pool.map(lambda a: one(*a), askers))
        for who in tokens:
            mine = [(status, body) for asker, status, body in answers if asker == who]
            assert sorted(status for status, _ in mine) == [200, 200, 200, 201], answers
            assert len({body["id"] for _, body in mine}) == 1
            assert all(body["metadata"] == {"secret": who} for _, body in mine), answers
        ids = {body["id"] for _, _, body in answers}
        assert len(ids) == 2


async def test_mixed_writers_on_one_session_from_two_processes_never_fail(
    live, fresh_server, admin_token
):
    """Log ingest, progress, cancel and retry on one session, from two server
    processes at once: no deadlock, no error, every event once and in order."""
    other = fresh_server()
    bases = [live.url, other.url]
    _, session = call(live.url, "POST", "sessions", admin_token, {"name": "busy"})
    tasks = [
        call(live.url, "POST", f"sessions/{session['id']}/tasks", admin_token,
             {"name": f"t{n}", "status": "running"})[1]
        for n in range(4)
    ]  # fmt: skip
    channel = f"session:{session['id']}"
    failures: list[tuple] = []
    stop = threading.Event()

    def logs(base):
        n = 0
        while not stop.is_set():
            n += 1
            entries = [
                {"message": f"line {n}.{i}", "task_id": tasks[i % 3]["id"]} for i in range(50)
            ]
            status, body = call(base, "POST", f"sessions/{session['id']}/logs", admin_token,
                                {"entries": entries})  # fmt: skip
            if status != 201:
                failures.append(("logs", status, body))

    def progress(base, task):
        n = 0
        while not stop.is_set():
            n += 1
            status, body = call(base, "PATCH", f"tasks/{task['id']}", admin_token,
                                {"progress": n % 100, "message": f"at {n}"})  # fmt: skip
            if status != 200:
                failures.append(("progress", status, body))

    def steer(base, task):
        while not stop.is_set():
            for method, path, body, ok in (
                ("POST", f"tasks/{task['id']}/cancel", None, 200),
                ("PATCH", f"tasks/{task['id']}", {"status": "cancelled"}, 200),
                ("POST", f"tasks/{task['id']}/retry", None, 200),
                ("PATCH", f"tasks/{task['id']}", {"status": "running"}, 200),
            ):
                status, answer = call(base, method, path, admin_token, body)
                if status != ok:
                    failures.append((path, status, answer))

    async with await wc.connect(live.ws_url, admin_token) as ws:
        start = (await wc.subscribe(ws, channel))["seq"]
        threads = [
            threading.Thread(target=logs, args=(bases[0],)),
            threading.Thread(target=logs, args=(bases[1],)),
            threading.Thread(target=progress, args=(bases[1], tasks[0])),
            threading.Thread(target=progress, args=(bases[0], tasks[1])),
            threading.Thread(target=steer, args=(bases[0], tasks[2])),
            threading.Thread(target=steer, args=(bases[1], tasks[3])),
        ]
        for thread in threads:
            thread.start()
        await asyncio.sleep(12)
        stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 60)
        assert not failures, failures[:5]

        stored, since = [], start
        while True:
            _, page = await asyncio.to_thread(
                call, live.url, "GET", f"events?channel={channel}&since={since}&limit=5000",
                admin_token,
            )  # fmt: skip
            stored += [f["seq"] for f in page["results"]]
            since = page["seq"]
            if not page["has_more"]:
                break
        assert len(stored) > 50
        got: list[int] = []
        while not got or got[-1] < stored[-1]:
            frame = await wc.recv(ws, timeout=30)
            if frame.get("type") == "event":
                got.append(frame["seq"])
        assert got == stored


def test_deletes_racing_reports_never_deadlock(transactional_db, admin_user):
    """Deleting tasks and sessions (as the admin does) while workers report
    on them: a delete and a report wait for each other in one order, so none
    fails but for the task being gone (on SQLite writers take turns anyway)."""
    from django.db import close_old_connections

    from sessions_app import services
    from sessions_app.models import Task

    rounds = 30 if postgres() else 5
    failures: list[str] = []

    def report(start: threading.Barrier, task_id: int) -> None:
        start.wait()
        try:
            for n in range(10):
                services.update_task(task_id, progress=n, message="working")
        except Refused as refused:  # deleted under it: what a worker is then told (404)
            if refused.code != "not_found":
                failures.append(repr(refused))
        except Exception as error:
            failures.append(repr(error))
        finally:
            close_old_connections()

    def delete(start: threading.Barrier, session_id: int, task_ids: list[int]) -> None:
        start.wait()
        try:
            services.delete_tasks(task_ids)
            services.delete_sessions([session_id])
        except Exception as error:
            failures.append(repr(error))
        finally:
            close_old_connections()

    for _ in range(rounds):
        session = services.create_session(name="doomed", owner=admin_user)[0]
        tasks = [services.create_task(session.pk, name=f"t{n}")[0].pk for n in range(4)]
        start = threading.Barrier(5)
        threads = [threading.Thread(target=report, args=(start, t)) for t in tasks]
        threads.append(threading.Thread(target=delete, args=(start, session.pk, tasks[:2])))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert failures == []
    assert not Task.objects.filter(session__name="doomed").exists()

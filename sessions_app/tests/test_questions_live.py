"""Questions against a real daphne: answers racing, the socket's answer_question,
a wait that ends with the answer, and a worker that waits through a restart."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from switchboard_client import SwitchboardError

from live.tests import wsclient as wc

pytestmark = pytest.mark.timeout(180)


def make_task(api):
    session = api.create_session("ask")
    return api.create_task(session["id"], "decide")


def ask_in_thread(api, task_id, **fields):
    """Run `api.ask` in a thread; the result (or the failure) lands in a dict."""
    got: dict = {}

    def run():
        try:
            got["answer"] = api.ask(task_id, **fields)
        except Exception as error:  # noqa: BLE001 - reported by the test
            got["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got


def open_question(api, task_id, timeout=30):
    """The task's open question, once the asker's request has made it."""
    for _ in range(timeout * 10):
        found = api.request("GET", "questions", params={"status": "open", "task": task_id})
        if found["results"]:
            return found["results"][0]
        threading.Event().wait(0.1)
    raise AssertionError("no question was asked")


def test_two_people_answering_at_once_exactly_one_wins(live, admin_token, worker_token):
    admin, worker = live.client(admin_token), live.client(worker_token)
    session = worker.create_session("race")
    for round_ in range(5):
        task = worker.create_task(session["id"], f"step {round_}")
        question = worker.request(
            "POST", f"tasks/{task['id']}/questions", {"prompt": "Which?", "choices": ["a", "b"]}
        )
        barrier = threading.Barrier(2)

        def answer(api, choice, barrier=barrier, question=question):
            barrier.wait()
            try:
                path = f"questions/{question['id']}/answer"
                return 200, api.request("POST", path, {"answer": choice})
            except SwitchboardError as error:
                return error.status, error.body

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(answer, (admin, worker), ("a", "b")))
        statuses = sorted(status for status, _ in results)
        assert statuses == [200, 409], results
        won = next(body for status, body in results if status == 200)
        lost = next(body for status, body in results if status == 409)
        assert lost["question"] == won
        final = worker.request("GET", f"questions/{question['id']}")
        assert final == won and final["answer"] in ("a", "b")
        events = worker.events(f"task:{task['id']}")["results"]
        assert [e["event"] for e in events if e["event"].startswith("question.")] == [
            "question.asked",
            "question.answered",
        ]


async def test_the_socket_answers_and_refuses_a_second_answer(live, admin_token, worker_token):
    worker = live.client(worker_token)
    task = await asyncio.to_thread(make_task, worker)
    async with await wc.connect(live.ws_url, admin_token) as ws:
        await wc.subscribe(ws, "tasks")
        body = {"prompt": "Ship it?", "choices": ["ship", "hold"]}
        question = await asyncio.to_thread(
            worker.request, "POST", f"tasks/{task['id']}/questions", body
        )
        asked, _ = await wc.recv_until(ws, lambda f: f.get("event") == "question.asked")
        assert asked["channel"] == "tasks" and asked["data"] == question
        await wc.send(ws, {"action": "answer_question", "question_id": question["id"], "id": 1})
        error, _ = await wc.recv_until(ws, lambda f: f.get("id") == 1)
        assert error["type"] == "error" and error["field"] == "answer"
        frame = {"action": "answer_question", "question_id": question["id"], "answer": "ship"}
        await wc.send(ws, {**frame, "id": 2})
        ack, _ = await wc.recv_until(ws, lambda f: f.get("id") == 2)
        assert ack["type"] == "ack" and ack["action"] == "answer_question"
        assert ack["question"]["answer"] == "ship" and ack["question"]["answered_by"] == "admin"
        told, _ = await wc.recv_until(ws, lambda f: f.get("event") == "question.answered")
        assert told["data"] == {**ack["question"], "action": "answer", "by": "admin"}
        await wc.send(ws, {**frame, "answer": "hold", "id": 3})
        refused, _ = await wc.recv_until(ws, lambda f: f.get("id") == 3)
        assert refused["type"] == "error" and refused["code"] == "conflict"
        assert refused["question"] == ack["question"]
        await wc.send(ws, {**frame, "question_id": 999999999, "id": 4})
        missing, _ = await wc.recv_until(ws, lambda f: f.get("id") == 4)
        assert missing["code"] == "not_found"


def test_a_worker_asks_and_gets_the_answer_and_a_timeout_gives_the_default(
    live, admin_token, worker_token
):
    admin, worker = live.client(admin_token), live.client(worker_token)
    task = make_task(worker)
    thread, got = ask_in_thread(worker, task["id"], prompt="Deploy?", choices=["yes", "no"])
    question = open_question(admin, task["id"])
    admin.request("POST", f"questions/{question['id']}/answer", {"answer": "yes"})
    thread.join(30)
    assert got == {"answer": "yes"}
    # Nobody answers: the default, once the timeout has passed.
    answer = worker.ask(task["id"], "Retry?", choices=["retry", "skip"], default="skip", timeout=1)
    assert answer == "skip"
    (expired,) = worker.request(
        "GET", "questions", params={"task": task["id"], "status": "expired"}
    )["results"]
    assert expired["answered_by"] is None and expired["answer"] == "skip"


def test_a_worker_waiting_for_an_answer_rides_through_a_server_restart(
    fresh_server, admin_token, worker_token
):
    srv = fresh_server()
    admin, worker = srv.client(admin_token), srv.client(worker_token)
    task = make_task(worker)
    thread, got = ask_in_thread(worker, task["id"], prompt="Which region?")
    question = open_question(admin, task["id"])
    srv.stop()  # SIGTERM: the server drains, the waiting request ends or is cut
    srv.start()
    admin.request("POST", f"questions/{question['id']}/answer", {"answer": "eu-west"})
    thread.join(60)
    assert got == {"answer": "eu-west"}
    asked = worker.request("GET", "questions", params={"task": task["id"]})
    assert asked["count"] == 1  # asked once, whatever was retried


async def test_a_socket_that_resumes_gets_the_question_events_it_missed(live, worker_token):
    worker = live.client(worker_token)
    task = await asyncio.to_thread(make_task, worker)
    channel = f"session:{task['session_id']}"
    async with await wc.connect(live.ws_url, worker_token) as ws:
        subscribed = await wc.subscribe(ws, channel)
    body = {"prompt": "Proceed?", "choices": ["go", "stop"]}
    question = await asyncio.to_thread(
        worker.request, "POST", f"tasks/{task['id']}/questions", body
    )
    path = f"questions/{question['id']}/answer"
    answered = await asyncio.to_thread(worker.request, "POST", path, {"answer": "go"})
    async with await wc.connect(live.ws_url, worker_token) as ws:
        await wc.subscribe(ws, channel, since=subscribed["seq"])
        last, before = await wc.recv_until(ws, lambda f: f.get("event") == "question.answered")
        frames = [f for f in [*before, last] if f.get("event", "").startswith("question.")]
    assert [(f["event"], f["data"]) for f in frames] == [
        ("question.asked", question),
        ("question.answered", {**answered, "action": "answer", "by": "worker"}),
    ]

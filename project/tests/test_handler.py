"""project/handler.py: a request's sync work runs on a long-lived thread,
lent to one request at a time, not on a thread made for the request."""

import asyncio
import json
import threading

import pytest

from project.handler import Handler, Threads


@pytest.fixture(autouse=True)
def probe_urls(settings):
    settings.ROOT_URLCONF = "project.tests.probe_urls"


async def get(app, path: str) -> dict:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    body = [{"type": "http.request", "body": b"", "more_body": False}]
    sent = []

    async def receive():
        if body:
            return body.pop()
        await asyncio.Event().wait()  # the client stays connected

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200
    return json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


async def test_requests_one_after_another_reuse_one_thread():
    app = Handler()
    first, second = await get(app, "/thread"), await get(app, "/thread")
    assert first["thread"] == second["thread"] != threading.get_ident()
    assert second["served"] == first["served"] + 1  # the same thread, still alive


async def test_requests_at_the_same_time_each_have_a_thread_of_their_own():
    app = Handler()
    answers = await asyncio.gather(*(get(app, "/thread") for _ in range(4)))
    assert len({a["thread"] for a in answers}) == 4
    assert len(app.threads.idle) == 4


def test_an_executor_still_busy_is_not_lent_again():
    pool = Threads()
    busy = pool.take()
    release = threading.Event()
    busy.submit(release.wait)
    pool.give_back(busy)
    assert pool.idle == []
    release.set()
    idle = pool.take()
    idle.submit(lambda: None).result()
    pool.give_back(idle)
    assert pool.idle == [idle]

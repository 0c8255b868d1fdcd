"""AsyncClient against a real server: the same calls as Client, awaited, with
the same retries and errors."""

import asyncio
import inspect
import time

import pytest
from switchboard_client import AsyncClient, Client, SwitchboardError

from conftest import free_port
from live.models import Event
from logs_app.models import LogEntry
from sessions_app.models import Session, Task
from tests.proxy import Proxy

pytestmark = pytest.mark.timeout(120)


def public(cls) -> dict:
    return {
        name: value
        for name in dir(cls)
        if not name.startswith("_") and callable(value := getattr(cls, name))
    }


def test_the_async_client_has_every_method_of_the_client_with_the_same_arguments():
    ours, theirs = public(AsyncClient), public(Client)
    assert sorted(ours) == sorted(theirs)
    for name, method in theirs.items():
        assert inspect.signature(ours[name]) == inspect.signature(method), name
    assert inspect.signature(AsyncClient) == inspect.signature(Client)
    for name, method in ours.items():
        wrapped = getattr(method, "__wrapped__", None)  # the async context managers
        if wrapped is not None:
            assert inspect.isasyncgenfunction(wrapped), name
        else:
            assert inspect.iscoroutinefunction(method), name


def test_the_async_client_creates_reports_and_reads(live, admin_token):
    async def work():
        async with AsyncClient(live.url, admin_token, timeout=10) as api:
            session = await api.create_session("job", {"k": "v"}, external_id="ac-1")
            again = await api.create_session("job", external_id="ac-1")
            assert again["id"] == session["id"]
            task = await api.create_task(session["id"], "step", stale_after=60)
            assert task["stale_after"] == 60
            assert (await api.progress(task["id"], 12.5, "working"))["progress"] == 12.5
            assert (await api.output(task["id"], "chunk"))["seq"] > 0
            async with api.tool(task["id"], "search", q="x") as call:
                call["result"] = 3
            await api.log(session["id"], [{"message": "hello"}])
            assert [e["message"] for e in (await api.logs(session["id"]))["entries"]] == ["hello"]
            await api.update_task(task["id"], status="completed", result={"n": 1})
            assert (await api.get_task(task["id"]))["result"] == {"n": 1}
            await api.update_session(session["id"], metadata={"k": "w"})
            assert (await api.get_session(session["id"]))["metadata"] == {"k": "w"}
            found = await api.events(f"task:{task['id']}")
            assert found["results"] and not found["reset"]
            with pytest.raises(SwitchboardError) as error:
                await api.update_task(task["id"], progress=500)
            assert error.value.status == 400 and "progress" in error.value.body["errors"]
            with pytest.raises(SwitchboardError) as error:
                await api.get_task(10**9)
            assert error.value.status == 404
        return session, task

    session, task = asyncio.run(work())
    steps = Event.objects.filter(task_id=task["id"], kind="task.output").order_by("id")
    assert [e.data.get("status") for e in steps] == [None, "tool_calling", "tool_completed"]
    assert steps[2].data["data"]["result"] == 3
    assert Session.objects.get(pk=session["id"]).metadata == {"k": "w"}


def test_the_session_block_ends_the_session_as_the_block_ends(live, admin_token):
    api = AsyncClient(live.url, admin_token)  # no pool: each call its own connection

    async def work():
        async with api.session("fine") as fine:
            pass
        with pytest.raises(ValueError):
            async with api.session("broken", external_id="broken-1") as broken:
                raise ValueError("bad input")
        return fine, broken

    fine, broken = asyncio.run(work())
    assert Session.objects.get(pk=fine["id"]).status == "completed"
    assert Session.objects.get(pk=broken["id"]).status == "failed"
    (line,) = LogEntry.objects.filter(session_id=broken["id"])
    assert line.level == 40 and "ValueError: bad input" in line.message


@pytest.fixture
def proxy(live):
    front = Proxy(free_port(), live.port)
    yield front
    front.close()


def test_a_retry_after_a_lost_answer_or_an_outage_writes_nothing_twice(proxy, admin_token):
    api = AsyncClient(proxy.url, admin_token, timeout=5)

    async def work():
        proxy.plan = ["lose"]  # stored by the server, its answer never heard
        session = await api.create_session("once")
        proxy.plan = ["503", "429:1", "lose"]
        started = time.monotonic()
        task = await api.create_task(session["id"], "once too")
        waited = time.monotonic() - started
        proxy.plan = ["lose"]
        await api.log(session["id"], [{"message": "one"}, {"message": "two"}])
        proxy.plan = ["lose"]
        await api.output(task["id"], "a chunk")
        return session, task, waited

    session, task, waited = asyncio.run(work())
    assert waited >= 1, "never sooner than the Retry-After"
    assert Session.objects.filter(name="once").count() == 1
    assert list(Task.objects.filter(session_id=session["id"]).values_list("pk", flat=True)) == [
        int(task["id"])
    ]
    messages = LogEntry.objects.filter(session_id=session["id"]).order_by("id")
    assert list(messages.values_list("message", flat=True)) == ["one", "two"]
    assert Event.objects.filter(task_id=task["id"], kind="task.output").count() == 1


def test_answers_that_will_not_change_raise_at_once_and_outages_give_up_in_time(proxy, admin_token):
    api = AsyncClient(proxy.url, admin_token, timeout=5, retry_for=1.5)

    async def work():
        proxy.plan = ["400"]
        with pytest.raises(SwitchboardError) as refused:
            await api.create_session("never")
        proxy.plan = ["503"] * 100
        started = time.monotonic()
        with pytest.raises(SwitchboardError) as gave_up:
            await api.create_session("never either")
        took = time.monotonic() - started
        down = AsyncClient(f"http://127.0.0.1:{free_port()}", admin_token, retry_for=0)
        with pytest.raises(SwitchboardError) as unreachable:
            await down.get_session(1)
        return refused.value, gave_up.value, took, unreachable.value

    refused, gave_up, took, unreachable = asyncio.run(work())
    assert refused.status == 400 and refused.tries == 1
    assert gave_up.status == 503 and gave_up.tries > 2 and "gave up after" in gave_up.message
    assert took < 10
    assert unreachable.status == 0 and "cannot reach" in unreachable.message
    assert proxy.seen[0].startswith("POST /api/v1/sessions")


def test_one_instance_serves_several_event_loops(live, admin_token):
    api = AsyncClient(live.url, admin_token)
    first = asyncio.run(api.create_session("loop one"))
    second = asyncio.run(api.create_session("loop two"))
    assert first["id"] != second["id"]


def test_the_async_client_pauses_resumes_and_waits_while_paused(live, admin_token):
    async def work():
        async with AsyncClient(live.url, admin_token, timeout=10) as api:
            session = await api.create_session("job")
            task = await api.create_task(session["id"], "step")
            await api.update_task(task["id"], status="running")
            assert (await api.pause_task(task["id"]))["changed"] is True
            waiting = asyncio.create_task(api.wait_while_paused(task["id"], poll=0.1))
            await asyncio.sleep(0.5)
            assert not waiting.done()  # held while paused, the loop still free
            assert (await api.resume_task(task["id"]))["task"]["pause_requested"] is False
            resumed = await asyncio.wait_for(waiting, 5)
            assert resumed["pause_requested"] is False
            # A question unanswered for its timeout gets its default.
            answer = await api.ask(task["id"], "Go on?", ["yes", "no"], default="no", timeout=1)
            assert answer == "no"

    asyncio.run(work())

"""Who may do what: viewers look at everything, operators also act, plain
users keep to their own sessions; the API, the socket and the admin agree."""

import asyncio

import pytest
from channels.db import database_sync_to_async as db
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client as DjangoClient
from switchboard_client import SwitchboardError
from websockets.exceptions import ConnectionClosed

from conftest import make_token
from live.models import Event
from live.tests import wsclient as wc
from sessions_app import services
from sessions_app.groups import OPERATORS, VIEWERS, create_groups
from sessions_app.models import Session, Task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def member(django_user_model, name: str, group: str | None, is_staff: bool = False):
    # Tests flush the database between them, groups included: make them again.
    create_groups(apps)
    user = django_user_model.objects.create_user(name, password="pw", is_staff=is_staff)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def viewer(django_user_model):
    return member(django_user_model, "viewer", VIEWERS)


@pytest.fixture
def operator(django_user_model):
    return member(django_user_model, "operator", OPERATORS)


@pytest.fixture
def work(worker_user) -> dict:
    """Another user's session with a running, a pending and a failed task."""
    session, _ = services.create_session(name="theirs", owner=worker_user, status="running")
    tasks = {
        status: services.create_task(session.pk, name=f"{status} one", status=status)[0]
        for status in ("running", "pending", "failed")
    }
    return {"session": session, **tasks}


def browser(user) -> DjangoClient:
    client = DjangoClient(enforce_csrf_checks=False)
    client.force_login(user)
    return client


def bearer(token: str) -> DjangoClient:
    return DjangoClient(headers={"Authorization": f"Bearer {token}"})


def test_the_migration_ships_both_groups_and_its_reverse_removes_them():
    act = Permission.objects.filter(codename="act_on_session")
    act.delete()  # made again by the migration, as on a database that has none yet
    call_command("migrate", "sessions_app", "0010", verbosity=0)
    assert not Group.objects.filter(name__in=[VIEWERS, OPERATORS]).exists()
    call_command("migrate", "sessions_app", verbosity=0)
    viewers = set(Group.objects.get(name=VIEWERS).permissions.values_list("codename", flat=True))
    operators = Group.objects.get(name=OPERATORS).permissions.values_list("codename", flat=True)
    assert viewers == {"view_session", "view_task", "view_logentry", "view_event", "view_question"}
    assert set(operators) == viewers | {"act_on_session"}


@pytest.mark.parametrize("how", ["cookie", "token"])
def test_a_viewer_reads_every_session_but_its_acts_are_refused(how, viewer, work):
    client = browser(viewer) if how == "cookie" else bearer(make_token(viewer))
    listed = client.get("/api/v1/sessions").json()["results"]
    assert [s["name"] for s in listed] == ["theirs"]
    running = work["running"]
    assert client.get(f"/api/v1/tasks/{running.pk}").status_code == 200
    assert client.get(f"/api/v1/events?channel=session:{work['session'].pk}").status_code == 200
    for path in (
        f"tasks/{running.pk}/cancel",
        f"tasks/{work['failed'].pk}/retry",
        f"sessions/{work['session'].pk}/cancel",
    ):
        response = client.post(f"/api/v1/{path}", {}, content_type="application/json")
        assert response.status_code == 403, (path, response.content)
        assert "act_on_session" in response.json()["detail"]
    running.refresh_from_db()
    assert not running.cancel_requested
    assert work["failed"].attempt == Task.objects.get(pk=work["failed"].pk).attempt
    assert Session.objects.get(pk=work["session"].pk).status == "running"


@pytest.mark.parametrize("how", ["cookie", "token"])
def test_an_operator_cancels_and_retries_another_users_tasks(how, operator, work):
    client = browser(operator) if how == "cookie" else bearer(make_token(operator))
    running = work["running"]
    response = client.post(f"/api/v1/tasks/{running.pk}/cancel")
    assert response.status_code == 200 and response.json()["task"]["cancel_requested"] is True
    retried = client.post(f"/api/v1/tasks/{work['failed'].pk}/retry").json()
    assert retried["status"] == "pending" and retried["attempt"] == 2
    # Acting is not reporting: the worker's own changes stay the owner's.
    patch = client.patch(
        f"/api/v1/tasks/{running.pk}", {"progress": 50}, content_type="application/json"
    )
    assert patch.status_code == 403
    assert client.post(f"/api/v1/sessions/{work['session'].pk}/cancel").status_code == 200


def test_a_plain_user_still_sees_and_acts_on_only_their_own(other_user, work):
    client = bearer(make_token(other_user))
    assert client.get("/api/v1/sessions").json()["results"] == []
    assert client.get(f"/api/v1/tasks/{work['running'].pk}").status_code == 404
    assert client.post(f"/api/v1/tasks/{work['running'].pk}/cancel").status_code == 404
    mine, _ = services.create_session(name="mine", owner=other_user)
    task, _ = services.create_task(mine.pk, name="my task")
    assert client.post(f"/api/v1/tasks/{task.pk}/cancel").json()["changed"] is True
    # No pages for a plain user's cookie: the login page, as before.
    page = browser(other_user).get(f"/sessions/{mine.pk}/")
    assert page.status_code == 302 and "/admin/login/" in page["Location"]
    assert browser(other_user).get("/api/v1/sessions").status_code == 401


def test_the_login_page_lets_in_viewers_but_not_plain_users(viewer, other_user):
    for user, allowed in ((viewer, True), (other_user, False)):
        client = DjangoClient()
        answer = client.post(
            "/admin/login/?next=/", {"username": user.username, "password": "pw", "next": "/"}
        )
        assert (answer.status_code == 302) is allowed, answer.content[:300]
        if allowed:
            assert answer["Location"] == "/"
            assert client.get("/").status_code == 200
            assert client.get("/admin/").status_code == 302  # the admin stays staff-only


def test_a_staff_viewer_gets_a_read_only_admin_without_its_actions(django_user_model, work):
    staff_viewer = member(django_user_model, "staffviewer", VIEWERS, is_staff=True)
    staff_operator = member(django_user_model, "staffoperator", OPERATORS, is_staff=True)
    client = browser(staff_viewer)
    listing = client.get("/admin/sessions_app/session/")
    assert listing.status_code == 200
    offered = listing.context["action_form"].fields["action"].choices
    assert [name for name, _ in offered if name] == ["export"]
    assert client.get("/admin/sessions_app/task/").context["action_form"] is None  # none at all
    page = client.get(f"/admin/sessions_app/session/{work['session'].pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    running = work["running"]
    # Posted anyway: refused, nothing cancelled.
    client.post(
        "/admin/sessions_app/task/",
        {"action": "cancel", "_selected_action": [running.pk]},
    )
    running.refresh_from_db()
    assert not running.cancel_requested
    assert client.post(f"/admin/sessions_app/task/{running.pk}/delete/").status_code == 403
    # An operator's admin offers them, and they work.
    operator = browser(staff_operator)
    offered = operator.get("/admin/sessions_app/task/").context["action_form"].fields["action"]
    assert {"cancel", "retry"} <= {name for name, _ in offered.choices}
    operator.post(
        "/admin/sessions_app/task/", {"action": "cancel", "_selected_action": [running.pk]}
    )
    running.refresh_from_db()
    assert running.cancel_requested


def test_questions_in_the_admin_are_answered_by_operators_and_only_read_by_viewers(
    django_user_model, work
):
    from sessions_app import questions
    from sessions_app.models import Question

    staff_viewer = member(django_user_model, "staffviewer", VIEWERS, is_staff=True)
    staff_operator = member(django_user_model, "staffoperator", OPERATORS, is_staff=True)
    running = work["running"]
    ask = questions.ask
    chosen, _ = ask(running.pk, prompt="Deploy?", choices=["yes", "no"], default="no")
    typed, _ = ask(running.pk, prompt="Which host?")
    defaulted, _ = ask(running.pk, prompt="Skip?", choices=["skip", "go"], default="skip")
    viewer = browser(staff_viewer)
    listing = viewer.get("/admin/sessions_app/question/")
    assert listing.status_code == 200 and b"Deploy?" in listing.content
    assert listing.context["action_form"] is None
    page = viewer.get(f"/admin/sessions_app/question/{chosen.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    viewer.post(f"/admin/sessions_app/question/{chosen.pk}/change/", {"answer": "yes"})
    assert Question.objects.get(pk=chosen.pk).status == "open"

    operator = browser(staff_operator)
    change = f"/admin/sessions_app/question/{chosen.pk}/change/"
    refused = operator.post(change, {"answer": "maybe"})
    assert refused.status_code == 200 and "answer" in refused.context["adminform"].form.errors
    assert operator.post(change, {"answer": "yes"}).status_code == 302
    operator.post(f"/admin/sessions_app/question/{typed.pk}/change/", {"answer": "db-2"})
    operator.post(
        "/admin/sessions_app/question/",
        {"action": "answer_with_default", "_selected_action": [defaulted.pk, chosen.pk]},
    )
    answers = {q.prompt: (q.status, q.answer, q.answered_by) for q in Question.objects.all()}
    assert answers == {
        "Deploy?": ("answered", "yes", staff_operator),
        "Which host?": ("answered", "db-2", staff_operator),
        "Skip?": ("answered", "skip", staff_operator),
    }
    # Answered: read-only now, for the operator too; and nobody adds or deletes one.
    page = operator.get(change)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert operator.get("/admin/sessions_app/question/add/").status_code == 403
    assert operator.post(f"/admin/sessions_app/question/{chosen.pk}/delete/").status_code == 403
    told = Event.objects.filter(kind="question.answered").values_list("data", flat=True)
    assert sorted((d["prompt"], d["by"], d["action"]) for d in told) == [
        ("Deploy?", "staffoperator", "answer"),
        ("Skip?", "staffoperator", "answer"),
        ("Which host?", "staffoperator", "answer"),
    ]


async def test_the_socket_refuses_a_viewers_cancel_and_takes_an_operators(
    fresh_server, django_user_model, worker_user
):
    server = fresh_server(SWITCHBOARD_IDENTITY_CHECK_SECONDS="1")
    viewer = await db(member)(django_user_model, "viewer", VIEWERS)
    operator = await db(member)(django_user_model, "operator", OPERATORS)
    session, _ = await db(services.create_session)(name="theirs", owner=worker_user)
    first, _ = await db(services.create_task)(session.pk, name="one")
    second, _ = await db(services.create_task)(session.pk, name="two")
    viewer_token = await db(make_token)(viewer)
    operator_token = await db(make_token)(operator)
    async with (
        await wc.connect(server.ws_url, viewer_token) as looking,
        await wc.connect(server.ws_url, operator_token) as acting,
    ):
        snapshot = await wc.subscribe(looking, "sessions")
        assert [s["name"] for s in snapshot["snapshot"]["sessions"]] == ["theirs"]
        await wc.send(looking, {"action": "cancel_task", "task_id": str(first.pk), "id": "c"})
        error, _ = await wc.recv_until(looking, lambda f: f.get("id") == "c")
        assert error["type"] == "error" and error["code"] == "forbidden", error
        assert error["field"] == "task_id" and "act_on_session" in error["message"]

        await wc.send(acting, {"action": "cancel_task", "task_id": str(first.pk), "id": "c"})
        ack, _ = await wc.recv_until(acting, lambda f: f.get("id") == "c")
        assert ack["type"] == "ack" and ack["status"] == "cancelled"

        # Out of the group: its API token is refused at once, the open socket's
        # cancels within the identity check (SWITCHBOARD_IDENTITY_CHECK_SECONDS).
        # Moved from the operators to the viewers: it may look, no longer act.
        await db(lambda: operator.groups.set([Group.objects.get(name=VIEWERS)]))()
        with pytest.raises(SwitchboardError) as refused:
            await asyncio.to_thread(server.client(operator_token).cancel_task, second.pk)
        assert refused.value.status == 403
        codes = []
        for attempt in range(40):
            frame = {"action": "cancel_task", "task_id": str(second.pk), "id": attempt}
            await wc.send(acting, frame)
            reply, _ = await wc.recv_until(acting, lambda f, a=attempt: f.get("id") == a)
            codes.append(reply.get("code", reply["type"]))
            if reply["type"] == "error":
                break
            await asyncio.sleep(0.25)
        # Until the socket's next identity check its rights are the old ones.
        assert codes[-1] == "forbidden" and set(codes[:-1]) <= {"ack"}, codes


async def test_a_viewers_browser_socket_sees_all_but_not_the_system_channel(
    fresh_server, django_user_model, worker_user
):
    server = fresh_server(SWITCHBOARD_IDENTITY_CHECK_SECONDS="1")
    viewer = await db(member)(django_user_model, "viewer", VIEWERS)
    await db(services.create_session)(name="theirs", owner=worker_user)
    client = await db(browser)(viewer)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    origin = f"http://127.0.0.1:{server.port}"
    async with await wc.connect(server.ws_url, origin=origin, cookie=cookie) as ws:
        snapshot = await wc.subscribe(ws, "sessions")
        assert [s["name"] for s in snapshot["snapshot"]["sessions"]] == ["theirs"]
        await wc.send(ws, {"action": "subscribe", "channel": "system", "id": "s"})
        error, _ = await wc.recv_until(ws, lambda f: f.get("id") == "s")
        assert error["code"] == "forbidden"
        # No longer a viewer: a browser that may not use the pages loses its socket.
        await db(viewer.groups.clear)()
        with pytest.raises(ConnectionClosed) as closed:
            await wc.recv_until(ws, lambda f: False, timeout=15)
        assert closed.value.rcvd.code == 4401

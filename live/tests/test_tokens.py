"""API tokens kept per server process (live/tokens.py): a kept token costs no
query, and a revocation is refused on the very next request."""

import json
import os
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conftest import free_port, make_token
from live import tokens
from live.models import ApiToken, hash_token

pytestmark = pytest.mark.django_db


def permissions(*codenames: str):
    return Permission.objects.filter(content_type__app_label="sessions_app", codename__in=codenames)


@pytest.fixture
def operator(django_user_model):
    """Neither staff nor superuser: sees and changes every session by permission."""
    user = django_user_model.objects.create_user("operator")
    user.user_permissions.set(permissions("view_session", "change_session"))
    return user


class Api:
    def __init__(self, token: str) -> None:
        self.http = Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body=None) -> tuple[int, dict]:
        response = getattr(self.http, method.lower())(
            f"/api/v1/{path}",
            data=json.dumps(body) if body is not None else None,
            content_type="application/json",
            headers=self.headers,
        )
        return response.status_code, response.json()


def a_task(owner_token: str) -> str:
    api = Api(owner_token)
    _, session = api.call("POST", "sessions", {"name": "s"})
    _, task = api.call(
        "POST", f"sessions/{session['id']}/tasks", {"name": "t", "status": "running"}
    )
    return task["id"]


def test_a_kept_token_is_checked_with_no_query(operator, django_assert_num_queries):
    plain = ApiToken.issue(operator)[1]
    assert tokens.lookup(plain).pk == operator.pk  # read once
    with django_assert_num_queries(0):
        user = tokens.lookup(plain)
        assert (user.pk, user.username, user.is_active) == (operator.pk, "operator", True)
        assert user.has_perm("sessions_app.change_session")
        assert not user.has_perm("sessions_app.delete_session")
        assert not user.is_superuser and not user.is_staff


def test_an_unknown_or_malformed_token_is_refused_every_time(db):
    for _ in range(2):
        assert tokens.lookup("sb_not-a-token") is None
        assert Api("sb_not-a-token").call("PATCH", "tasks/1", {"progress": 1})[0] == 401


@pytest.mark.django_db(transaction=True)
def test_a_progress_report_by_a_kept_token_makes_only_the_writes_statements(
    operator, django_assert_num_queries
):
    """The write's own statements (sessions_app test_services counts them):
    no token lookup and no permission query besides, for a user who is not
    a superuser."""
    token = make_token(operator)
    task_id = a_task(token)
    api = Api(token)
    assert api.call("PATCH", f"tasks/{task_id}", {"progress": 1})[0] == 200
    expected = 7 if connection.vendor == "postgresql" else 8
    with django_assert_num_queries(expected):
        status, body = api.call("PATCH", f"tasks/{task_id}", {"progress": 2})
    assert status == 200 and body["progress"] == 2


def test_a_deleted_token_is_refused_on_its_next_request(operator):
    token = make_token(operator)
    task_id = a_task(token)
    api = Api(token)
    assert api.call("PATCH", f"tasks/{task_id}", {"progress": 1})[0] == 200
    refused = Api("sb_not-a-token").call("PATCH", f"tasks/{task_id}", {"progress": 1})
    ApiToken.objects.get(digest=hash_token(token)).delete()
    assert api.call("PATCH", f"tasks/{task_id}", {"progress": 2}) == refused
    assert refused[0] == 401


def test_a_deactivated_user_is_refused_on_its_next_request(operator):
    token = make_token(operator)
    task_id = a_task(token)
    api = Api(token)
    assert api.call("PATCH", f"tasks/{task_id}", {"progress": 1})[0] == 200
    operator.is_active = False
    operator.save()
    assert api.call("PATCH", f"tasks/{task_id}", {"progress": 2})[0] == 401


def test_a_permission_taken_away_applies_on_the_next_request(django_user_model, admin_token):
    """Through a group: another user's task is 200, then 403 once the group
    loses `change_session`, then 404 once the user leaves the group."""
    task_id = a_task(admin_token)
    group = Group.objects.create(name="operators")
    group.permissions.set(permissions("view_session", "change_session"))
    user = django_user_model.objects.create_user("member")
    user.groups.add(group)
    api = Api(make_token(user))
    assert api.call("PATCH", f"tasks/{task_id}", {"progress": 1})[0] == 200
    group.permissions.remove(*permissions("change_session"))
    assert api.call("PATCH", f"tasks/{task_id}", {"progress": 2})[0] == 403
    user.groups.remove(group)
    assert api.call("PATCH", f"tasks/{task_id}", {"progress": 3})[0] == 404
    user.user_permissions.add(*permissions("view_session", "change_session"))
    assert api.call("PATCH", f"tasks/{task_id}", {"progress": 4})[0] == 200


def test_a_kept_token_still_records_when_it_was_last_used(operator, monkeypatch):
    plain = ApiToken.issue(operator)[1]
    token = ApiToken.objects.get(digest=hash_token(plain))
    assert token.last_used_at is None
    tokens.lookup(plain)
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    tokens.lookup(plain)  # within the minute: not written again
    token.refresh_from_db()
    assert token.last_used_at == first
    monkeypatch.setattr(ApiToken, "LAST_USED_EVERY", -1)  # always due
    tokens.lookup(plain)
    token.refresh_from_db()
    assert token.last_used_at > first
    assert timezone.now() - token.last_used_at < timedelta(seconds=5)


def test_without_redis_tokens_are_read_from_the_database(operator, monkeypatch):
    """The version cannot be read: nothing is kept, every request reads the
    database (so a revocation still applies at once)."""
    dead = tokens.Versions(f"redis://127.0.0.1:{free_port()}/5", "switchboard-test:tokens")
    monkeypatch.setattr(tokens.cache, "versions", dead)
    plain = ApiToken.issue(operator)[1]
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            assert tokens.lookup(plain).pk == operator.pk
        assert queries.captured_queries
    ApiToken.objects.get(digest=hash_token(plain)).delete()
    assert tokens.lookup(plain) is None


@pytest.mark.skipif(
    not os.environ.get("REDIS_URL") and connection.vendor != "sqlite",
    reason="PostgreSQL without Redis: one process, and no shared version",
)
def test_a_token_revoked_elsewhere_is_refused_at_once_by_every_server(
    fresh_server, operator, django_user_model
):
    """Two daphne processes keep the token; it is revoked in a third (this
    one); each server refuses its next request, with no wait. (Through Redis;
    on SQLite without it, through the version file beside the database.)"""
    from switchboard_client import Client as Worker
    from switchboard_client import SwitchboardError

    servers = [fresh_server(), fresh_server()]
    token = make_token(operator)
    task_id = a_task(token)
    workers = [Worker(s.url, token, timeout=10) for s in servers]
    for n, worker in enumerate(workers):
        worker.progress(task_id, n + 1)
        worker.progress(task_id, n + 2)  # kept now
    ApiToken.objects.get(digest=hash_token(token)).delete()
    for worker in workers:
        with pytest.raises(SwitchboardError) as refused:
            worker.progress(task_id, 50)
        assert refused.value.status == 401

"""Log ingest and queries over HTTP."""

import json

import pytest
from django.test import Client

from live.models import Event
from logs_app.models import LogEntry
from sessions_app import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def http(admin_token):
    client = Client(headers={"Authorization": f"Bearer {admin_token}"})
    return client


@pytest.fixture
def session(admin_user):
    return services.create_session(name="logs", owner=admin_user)[0]


def post(http, session_id, entries):
    response = http.post(
        f"/api/v1/sessions/{session_id}/logs",
        json.dumps({"entries": entries}),
        content_type="application/json",
    )
    return response.status_code, response.json()


def test_five_hundred_lines_are_one_transaction_and_one_event(http, session):
    before = Event.objects.count()
    entries = [{"message": f"line {n}", "level": "INFO"} for n in range(500)]
    status, body = post(http, session.pk, entries)
    assert status == 201 and body["stored"] == 500
    assert Event.objects.count() == before + 1
    event = Event.objects.last()
    assert event.kind == "log.append" and event.data == {"count": 500}
    ids = list(LogEntry.objects.order_by("id").values_list("id", flat=True))
    assert len(ids) == 500 and body["last_id"] == str(ids[-1])
    assert set(LogEntry.objects.values_list("seq", flat=True)) == {event.pk}


def test_a_retried_batch_with_uids_is_stored_once(http, session):
    entries = [{"message": f"m{n}", "uid": f"u{n}"} for n in range(10)]
    assert post(http, session.pk, entries)[1]["stored"] == 10
    status, body = post(http, session.pk, entries + [{"message": "new", "uid": "u10"}])
    assert status == 201 and body == {**body, "stored": 1, "skipped": 10}
    assert LogEntry.objects.count() == 11


def test_messages_are_kept_verbatim(http, session):
    text = "  <b>bold</b>\n\tindented \x1b[31mred\x1b[0m  "
    post(http, session.pk, [{"message": text}])
    assert LogEntry.objects.get().message == text


@pytest.mark.parametrize(
    "entries, field",
    [
        ([{"level": "INFO"}], "entries.0.message"),
        ([{"message": "ok"}, {"message": "x", "level": "LOUD"}], "entries.1.level"),
        ([{"message": "x", "ts": "yesterday"}], "entries.0.ts"),
        ([{"message": "x", "task_id": "abc"}], "entries.0.task_id"),
        ([{"message": "x", "task_id": 999999}], "entries.0.task_id"),
        ([{"message": "x", "extra": [1]}], "entries.0.extra"),
        ("not a list", "entries"),
    ],
)
def test_bad_entries_are_400_naming_the_entry_and_store_nothing(http, session, entries, field):
    status, body = post(http, session.pk, entries)
    assert status == 400 and field in body["errors"], body
    assert LogEntry.objects.count() == 0


def test_logs_of_an_invisible_session_are_404(http, other_token, session):
    other = Client(headers={"Authorization": f"Bearer {other_token}"})
    assert other.get(f"/api/v1/sessions/{session.pk}/logs").status_code == 404
    response = other.post(
        f"/api/v1/sessions/{session.pk}/logs",
        json.dumps({"entries": [{"message": "x"}]}),
        content_type="application/json",
    )
    assert response.status_code == 404


def test_query_filters_by_level_task_text_and_time(http, session):
    task = services.create_task(session.pk, name="t")[0]
    post(
        http,
        session.pk,
        [
            {"message": "debug noise", "level": "DEBUG", "ts": "2026-01-01T10:00:00Z"},
            {"message": "disk almost FULL", "level": "WARNING", "ts": "2026-01-01T11:00:00Z"},
            {"message": "crash", "level": 40, "task_id": task.pk, "ts": "2026-01-01T12:00:00Z"},
        ],
    )

    def messages(**params):
        response = http.get(f"/api/v1/sessions/{session.pk}/logs", params)
        assert response.status_code == 200, response.content
        return [e["message"] for e in response.json()["entries"]]

    assert messages() == ["debug noise", "disk almost FULL", "crash"]
    assert messages(level="warning") == ["disk almost FULL", "crash"]
    assert messages(level="40") == ["crash"]
    assert messages(task=task.pk) == ["crash"]
    assert messages(q="full") == ["disk almost FULL"]
    assert messages(since="2026-01-01T10:30:00+00:00", until="2026-01-01T11:30:00Z") == [
        "disk almost FULL"
    ]
    for params in ({"level": "LOUD"}, {"since": "soon"}, {"limit": 0}, {"limit": 10001}):
        assert http.get(f"/api/v1/sessions/{session.pk}/logs", params).status_code == 400


def test_paging_back_with_before_reaches_the_first_line(http, session):
    post(http, session.pk, [{"message": f"line {n}"} for n in range(250)])
    url = f"/api/v1/sessions/{session.pk}/logs"
    page = http.get(url).json()
    assert len(page["entries"]) == 100 and page["entries"][-1]["message"] == "line 249"
    seen = page["entries"]
    while page["has_more"]:
        page = http.get(url, {"before": page["next_before"], "limit": 100}).json()
        seen = page["entries"] + seen
    assert [e["message"] for e in seen] == [f"line {n}" for n in range(250)]
    ids = [int(e["id"]) for e in seen]
    assert ids == sorted(ids)


def test_the_download_streams_exactly_the_current_query(admin_user, session):
    from logs_app.services import append_entries

    append_entries(
        session.pk,
        [
            {"message": "quiet", "level": 10},
            {"message": "loud one", "level": 40, "logger": "app"},
            {"message": "\x1b[31mloud two\x1b[0m\nsecond line", "level": 50},
        ],
    )
    browser = Client()
    browser.force_login(admin_user)
    response = browser.get(f"/sessions/{session.pk}/logs/download", {"level": "ERROR"})
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith(f'session-{session.pk}.log"')
    from asgiref.sync import async_to_sync

    async def body():  # the view streams asynchronously, as under daphne
        return b"".join([chunk async for chunk in response.streaming_content])

    text = async_to_sync(body)().decode()
    assert "quiet" not in text
    assert " ERROR app: loud one\n" in text
    assert "CRITICAL \x1b[31mloud two\x1b[0m\nsecond line\n" in text
    assert (
        browser.get(f"/sessions/{session.pk}/logs/download", {"level": "LOUD"}).status_code == 400
    )


def test_the_rate_endpoint_counts_lines_a_minute_by_level(http, session):
    from logs_app.services import append_entries

    append_entries(
        session.pk, [{"message": "a", "level": 20}] * 3 + [{"message": "b", "level": 40}]
    )
    response = http.get(f"/api/v1/sessions/{session.pk}/logs/rate", {"minutes": 5})
    assert response.status_code == 200
    buckets = response.json()["buckets"]
    assert len(buckets) == 5 and buckets[-1]["counts"] == {"INFO": 3, "ERROR": 1}
    assert http.get(f"/api/v1/sessions/{session.pk}/logs/rate", {"minutes": 0}).status_code == 400


def test_a_large_page_answers_each_line_as_the_model_shows_it(http, session):
    task = services.create_task(session.pk, name="t")[0]
    entries = [
        {"message": f"line {n} é ✓", "level": 15 if n == 3 else "WARNING", "logger": "a.b",
         "task_id": str(task.pk) if n % 2 else None, "extra": {"n": n} if n % 3 else None,
         "uid": f"u{n}"}
        for n in range(2500)
    ]  # fmt: skip
    entries[7]["ts"] = "2026-01-02T03:04:05.123456+02:00"
    assert post(http, session.pk, entries)[0] == 201
    response = http.get(f"/api/v1/sessions/{session.pk}/logs", {"limit": 10000})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    expected = [e.as_json() for e in LogEntry.objects.filter(session=session).order_by("id")]
    assert body == {"entries": expected, "has_more": False, "next_before": None}
    assert body["entries"][3]["level"] == "Level 15"
    # Stored as sent, in order (one insert for many rows).
    shown = [(e["message"], e["task_id"], e["extra"], e["uid"]) for e in body["entries"]]
    assert shown == [(e["message"], e["task_id"], e["extra"], e["uid"]) for e in entries]
    assert [int(e["id"]) for e in body["entries"]] == sorted(int(e["id"]) for e in body["entries"])
    assert body["entries"][7]["ts"] == "2026-01-02T01:04:05.123456+00:00"


def test_keyword_search_uses_the_trigram_index_on_postgresql(session):
    from django.db import connection

    from logs_app import services as log_services

    if connection.vendor != "postgresql":
        pytest.skip("the trigram index is made on PostgreSQL only")
    LogEntry.objects.bulk_create(
        LogEntry(session=session, message=f"GET /items/{n} 200") for n in range(2000)
    )
    # The expression Django writes for `q` is the one the index holds.
    queryset = log_services.LogFilter(q="Checksum").apply(LogEntry.objects.order_by())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE logs_app_logentry")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = queryset.explain()
    assert "log_message_trgm_idx" in plan


@pytest.mark.parametrize(
    "q", ["öl", "ÜBER", "ärger", "straße", "STRAßE", "STRASSE", "Σ", "σ", "plain"]
)
def test_keyword_search_agrees_live_and_stored_for_any_text(http, session, q):
    """The live filter (Python) and the stored query (SQL) match the same
    lines, non-ASCII text included, on both databases."""
    from logs_app.services import LogFilter

    messages = ["Ärger über Öl", "straße gesperrt", "ΣΊΣΥΦΟΣ σ", "PLAIN text"]
    post(http, session.pk, [{"message": m} for m in messages])
    log_filter = LogFilter(q=q)
    stored = [row.message for row in log_filter.apply(LogEntry.objects.filter(session=session))]
    live = [
        e["message"]
        for e in (row.as_json() for row in LogEntry.objects.all())
        if log_filter.matches(e)
    ]
    assert stored == live
    response = http.get(f"/api/v1/sessions/{session.pk}/logs", {"q": q})
    assert [e["message"] for e in response.json()["entries"]] == stored
    expected = {
        "öl": 1, "ÜBER": 1, "ärger": 1, "straße": 1, "STRAßE": 1, "STRASSE": 0,
        "Σ": 1, "σ": 1, "plain": 1,
    }[q]  # fmt: skip
    assert len(stored) == expected, (q, stored)

"""The write path: services, signals and the event log's ordering."""

import threading
import time
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from live import events, eventstore
from live.errors import Refused
from live.models import Event, EventChannel
from logs_app import services as log_services
from sessions_app import reports, services
from sessions_app.models import Session, Task


@pytest.mark.django_db
def test_a_change_and_its_event_commit_together_or_not_at_all():
    with pytest.raises(RuntimeError), transaction.atomic():
        services.create_session(name="doomed")
        raise RuntimeError("rolled back")
    assert Session.objects.count() == 0 and Event.objects.count() == 0


@pytest.mark.django_db
def test_each_event_knows_the_seq_before_it_in_each_channel():
    session = services.create_session(name="s")[0]
    task = services.create_task(session.pk, name="t")[0]
    services.update_task(task.pk, progress=5)
    placements = EventChannel.objects.filter(channel=f"task:{task.pk}").order_by("event_id")
    chain = [(p.prev, p.event_id) for p in placements]
    assert chain[0][0] == 0
    assert all(prev == earlier for (prev, _), (_, earlier) in zip(chain[1:], chain, strict=False))


@pytest.mark.django_db
def test_an_orm_save_elsewhere_records_an_event_once():
    session = services.create_session(name="s")[0]
    task = services.create_task(session.pk, name="t")[0]
    before = Event.objects.count()
    task.status = "completed"
    task.save()  # as the admin or a shell would
    kinds = list(
        Event.objects.filter(id__gt=Event.objects.all()[before - 1].id).values_list(
            "kind", flat=True
        )
    )
    assert kinds.count("task.update") == 1
    assert Session.objects.get().completed_tasks == 1
    assert "session.update" in kinds


@pytest.mark.django_db
def test_a_service_write_is_not_published_twice_by_the_signals():
    session = services.create_session(name="s")[0]
    before = Event.objects.count()
    services.update_session(session.pk, status="running")
    assert Event.objects.count() == before + 1


@pytest.mark.django_db
def test_deleting_a_task_tells_its_session_channel():
    session = services.create_session(name="s")[0]
    task = services.create_task(session.pk, name="t")[0]
    task_id, session_id = task.pk, session.pk
    task.delete()
    assert Event.objects.filter(kind="task.deleted", task_id=task_id).exists()
    assert Session.objects.get().total_tasks == 0
    session.delete()
    assert Event.objects.filter(kind="session.deleted", session_id=session_id).exists()


@pytest.mark.django_db
def test_completing_a_task_sets_full_progress_and_finish_time():
    session = services.create_session(name="s")[0]
    task = services.create_task(session.pk, name="t", status="running")[0]
    task = services.update_task(task.pk, status="completed")
    assert task.progress == 100 and task.finished_at and task.started_at
    assert Session.objects.get().status == "running"  # started by its task


@pytest.mark.django_db
def test_a_lost_task_is_marked_by_its_field_not_by_the_words_of_its_error():
    session = services.create_session(name="s")[0]
    worded = services.create_task(session.pk, name="worded", status="running")[0]
    silent = services.create_task(session.pk, name="silent", status="running")[0]
    # A worker's own failure that happens to read like the sweeper's is not lost.
    worded = services.update_task(worded.pk, status="failed", error="no report for 5 s")
    reports.refuse_if_lost(worded)
    assert worded.lost is False

    assert services.fail_lost(silent.pk, lambda task: task.created_at, default=1) is False
    assert services.fail_lost(silent.pk, lambda task: task.created_at.replace(year=2000), 1)
    silent = Task.objects.get(pk=silent.pk)
    assert silent.lost and silent.status == "failed"
    with pytest.raises(Refused, match="retry"):
        reports.refuse_if_lost(silent)
    event = Event.objects.filter(task_id=silent.pk, kind="task.update").latest("pk")
    assert event.data["lost"] is True
    assert services.retry_task(silent.pk).lost is False


@pytest.mark.django_db
def test_cancelling_a_session_cancels_its_unfinished_tasks():
    session = services.create_session(name="s")[0]
    waiting = services.create_task(session.pk, name="w")[0]
    busy = services.create_task(session.pk, name="b", status="running")[0]
    done = services.create_task(session.pk, name="d", status="completed")[0]
    session = services.cancel_session(session.pk)
    assert session.status == "cancelled"
    statuses = dict(Task.objects.values_list("pk", "status"))
    assert statuses == {waiting.pk: "cancelled", busy.pk: "running", done.pk: "completed"}
    assert Task.objects.get(pk=busy.pk).cancel_requested


@pytest.mark.django_db(transaction=True)
def test_event_ids_follow_commit_order_with_concurrent_writers():
    """A writer that takes an id must commit before a later writer can take a bigger one.

    The slow writer holds its transaction open after recording; the fast one
    starts while it waits. On PostgreSQL this is the advisory lock; on SQLite,
    BEGIN IMMEDIATE. Either way the fast writer's event gets the bigger id and
    commits second, so a reader who saw it has seen the slow one too.
    """
    session = services.create_session(name="s")[0]
    recorded = threading.Event()
    commits: list[tuple[str, int]] = []

    def slow():
        with transaction.atomic():
            event = events.record("session.update", ["sessions"], session_id=session.pk, data={})
            recorded.set()
            time.sleep(0.5)
        commits.append(("slow", event.pk))
        connection.close()

    def fast():
        recorded.wait(5)
        with transaction.atomic():
            event = events.record("session.update", ["sessions"], session_id=session.pk, data={})
        commits.append(("fast", event.pk))
        connection.close()

    threads = [threading.Thread(target=slow), threading.Thread(target=fast)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [name for name, _ in commits] == ["slow", "fast"]
    assert commits[0][1] < commits[1][1]


@contextmanager
def a_log_batch_held_open(session_id: int, seconds: float = 1.0):
    """A log batch of its own transaction (another thread), held open for
    `seconds` after its event is stored; yields the list its commit joins."""
    commits: list[tuple[str, int]] = []
    recorded = threading.Event()

    def hold():
        try:
            with transaction.atomic():
                event = events.record("log.append", [f"logs:{session_id}"], session_id=session_id,
                                      data={"count": 0})  # fmt: skip
                recorded.set()
                time.sleep(seconds)
            commits.append(("log batch", event.pk))
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert recorded.wait(5)
    try:
        yield commits
    finally:
        holder.join(10)
        connection.close()


postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite has one writer at a time (BEGIN IMMEDIATE)"
)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_log_batch_in_flight_holds_back_no_other_session_only_its_own():
    """The batch holds its session's event lock for a second; meanwhile a
    progress report, a session change and a log batch of another session all
    commit. Its own session's next batch waits for it and gets a bigger id."""
    busy = services.create_session(name="logging")[0]
    other = services.create_session(name="other")[0]
    task = services.create_task(other.pk, name="t", status="running")[0]
    with a_log_batch_held_open(busy.pk) as commits:
        services.update_task(task.pk, progress=10)
        commits.append(("progress", Event.objects.latest("id").pk))
        services.update_session(other.pk, name="renamed")
        commits.append(("session", Event.objects.latest("id").pk))
        log_services.append_entries(other.pk, [{"message": "elsewhere"}])
        commits.append(("other log", Event.objects.latest("id").pk))
        log_services.append_entries(busy.pk, [{"message": "same session"}])
        commits.append(("same log", Event.objects.latest("id").pk))
    assert [name for name, _ in commits] == [
        "progress", "session", "other log", "log batch", "same log"
    ]  # fmt: skip
    seqs = dict(commits)
    assert seqs["log batch"] < seqs["progress"]  # committed out of id order across sessions
    assert seqs["log batch"] < seqs["same log"]  # and in order within one


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_reader_of_every_channel_stops_before_the_oldest_write_in_flight(admin_user):
    """A log batch takes an id, a progress report takes a bigger one and
    commits first. A poller of every channel asked meanwhile must not pass
    the batch, and need not wait for it: it answers nothing past the
    horizon, and once the batch commits, both, in order."""
    from django.test import Client

    from live.models import ApiToken

    token = ApiToken.issue(admin_user)[1]
    busy = services.create_session(name="logging")[0]
    task = services.create_task(services.create_session(name="other")[0].pk, name="t",
                                status="running")[0]  # fmt: skip
    since = events.newest_seq()

    def poll():
        return Client().get(f"/api/v1/events?since={since}",
                            HTTP_AUTHORIZATION=f"Bearer {token}").json()  # fmt: skip

    with a_log_batch_held_open(busy.pk) as commits:
        services.update_task(task.pk, progress=10)
        progress = Event.objects.latest("id").pk
        during = poll()
        answered_while_open = not commits  # the batch had not committed yet
    batch = dict(commits)["log batch"]
    assert batch < progress
    assert during["results"] == [] and during["seq"] == since
    assert answered_while_open  # the poll did not wait for the batch
    after = poll()
    assert [f["seq"] for f in after["results"]] == [batch, progress]
    assert after["seq"] == progress


@pytest.mark.django_db(transaction=True)
def test_a_progress_report_takes_eight_statements_seven_on_postgresql(
    django_assert_num_queries,
):
    """Begin; the session (found through the task) and the task, locked; the
    update; the event; the heads of its three channels in one probe; their
    places; commit. On PostgreSQL: the session's event lock (and the mark of
    a write in flight), then the event, the heads and the places in one
    statement."""
    session, _ = services.create_session(name="counted")
    task, _ = services.create_task(session.pk, name="t", status="running")
    before = eventstore.channel_heads([f"session:{session.pk}", f"task:{task.pk}", "tasks"])
    expected = 7 if connection.vendor == "postgresql" else 8
    with django_assert_num_queries(expected):
        services.update_task(task.pk, progress=42.0)
    event = Event.objects.latest("id")
    heads = dict(EventChannel.objects.filter(event=event).values_list("channel", "prev"))
    assert set(heads) == {f"session:{session.pk}", f"task:{task.pk}", "tasks"}
    assert all(prev < event.pk for prev in heads.values())
    assert heads == {channel: before[channel] for channel in heads}
    assert eventstore.channel_heads([f"task:{task.pk}", "nowhere"]) == {
        f"task:{task.pk}": event.pk,
        "nowhere": 0,
    }


def create_in_a_thread(results: list, start: threading.Barrier | None = None, **fields):
    """services.create_session on a connection of its own; appends
    (who asked, session, created)."""

    def create():
        try:
            if start is not None:
                start.wait(10)
            results.append((fields.get("owner"), *services.create_session(**fields)))
        finally:
            connection.close()

    thread = threading.Thread(target=create)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_create_that_waits_for_another_owners_insert_of_its_external_id_makes_its_own(
    django_user_model,
):
    """Alice's create holds its transaction open after inserting; Bob's and
    Alice's own retry start meanwhile. Neither sees her uncommitted row, so both
    insert (on PostgreSQL, waiting on the unique index). Bob's goes in: his
    namespace is his own. Alice's retry loses to hers and answers hers."""
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    inserted = threading.Event()
    held: list = []

    def hold():
        try:
            with transaction.atomic():
                held.append(services.create_session(name="a", metadata={"db_password": "x"},
                                                    external_id="job", owner=alice))  # fmt: skip
                inserted.set()
                time.sleep(0.5)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert inserted.wait(5)
    results: list = []
    threads = [
        create_in_a_thread(results, name="b", external_id="job", owner=bob),
        create_in_a_thread(results, name="a again", external_id="job", owner=alice),
    ]
    for thread in [holder, *threads]:
        thread.join(10)
    hers = held[0][0]
    answers = {asker: (session, created) for asker, session, created in results}
    his, created = answers[bob]
    assert created and his.pk != hers.pk and his.owner_id == bob.pk and his.metadata == {}
    mine, created = answers[alice]
    assert mine.pk == hers.pk and not created
    assert Session.objects.filter(external_id="job").count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_racing_creates_by_two_owners_with_one_external_id_each_get_their_own(
    django_user_model,
):
    """Alice and Bob each send three creates of one external_id at one moment,
    round after round: each owner gets one session, created once (the rest are
    retries answered with it), and never the other's. SQLite takes one writer
    at a time, so it races less, in fewer rounds."""
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    rounds = 50 if connection.vendor == "postgresql" else 10
    for round_ in range(rounds):
        start = threading.Barrier(6)
        results: list = []
        threads = [
            create_in_a_thread(
                results,
                start,
                name=user.username,
                external_id=f"job-{round_}",
                metadata={"secret": user.username},
                owner=user,
            )  # fmt: skip
            for user in (alice, bob, alice, bob, alice, bob)
        ]
        for thread in threads:
            thread.join(30)
        assert len(results) == 6, f"round {round_}: {len(results)} of 6 answered"
        for user in (alice, bob):
            answers = [(s, created) for asker, s, created in results if asker == user]
            assert len(answers) == 3
            assert all(s.owner_id == user.pk for s, _ in answers)
            assert all(s.metadata == {"secret": user.username} for s, _ in answers)
            assert len({s.pk for s, _ in answers}) == 1
            assert sorted(created for _, created in answers) == [False, False, True]
        owners = Session.objects.filter(external_id=f"job-{round_}").values_list("owner", flat=True)
        assert sorted(owners) == sorted([alice.pk, bob.pk])


def test_deleting_a_user_keeps_their_sessions_even_when_an_external_id_clashes(
    worker_user, other_user
):
    from sessions_app.models import Session

    ownerless = services.create_session(name="command's", external_id="nightly")[0]
    mine = services.create_session(name="worker's", external_id="nightly", owner=worker_user)[0]
    theirs = services.create_session(name="other's", external_id="nightly", owner=other_user)[0]
    worker_user.delete()
    mine.refresh_from_db()
    assert mine.owner_id is None and mine.external_id == f"nightly~{mine.pk}"
    other_user.delete()
    theirs.refresh_from_db()
    assert theirs.external_id == f"nightly~{theirs.pk}"
    assert Session.objects.get(pk=ownerless.pk).external_id == "nightly"

"""The webhook outbox: rows written with the failure, claimed once, retried
with a growing wait, marked delivered, and managed in the admin."""

import threading
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

from live.models import Event
from operations import outbox
from operations.models import Delivery
from operations.tests.test_alerts import Receiver, wait_for
from sessions_app import services
from sessions_app.models import Webhook

pytestmark = pytest.mark.timeout(120)

# Rows to a SWITCHBOARD_WEBHOOKS URL this process does not have: its own
# deliverer leaves them alone, so these tests drive the claims themselves.
ELSEWHERE = "e" * 64
KEY = (None, ELSEWHERE)


def row(**fields) -> Delivery:
    values = {
        "url_key": ELSEWHERE,
        "target": "http://127.0.0.1/hook",
        "event": "task.failed",
        "seq": 1,
        "payload": {"event": "task.failed", "seq": 1},
        **fields,
    }
    return Delivery.objects.create(**values)


def fresh(delivery: Delivery) -> Delivery:
    return Delivery.objects.get(pk=delivery.pk)


@pytest.fixture
def hook_url(settings):
    """A receiver named in SWITCHBOARD_WEBHOOKS, as the environment gives it."""
    receiver = Receiver(statuses=[500])
    settings.SWITCHBOARD = {**settings.SWITCHBOARD, "WEBHOOKS": [receiver.url]}
    yield receiver
    receiver.close()


@pytest.mark.django_db(transaction=True)
def test_the_row_is_written_in_the_failures_transaction_and_gone_when_it_rolls_back():
    Webhook.objects.create(url="http://127.0.0.1:9/nobody", name="hook")
    session, _ = services.create_session(name="nightly")
    task, _ = services.create_task(session.pk, name="step", status="running")
    seen_outside = []

    def count_elsewhere():
        seen_outside.append(Delivery.objects.count())
        connections.close_all()

    with pytest.raises(RuntimeError), transaction.atomic():
        services.update_task(task.pk, status="failed", error="boom")
        inside = Delivery.objects.get()
        assert inside.event == "task.failed" and inside.status == "pending"
        assert inside.payload["seq"] == inside.seq
        assert Event.objects.get(kind="system.alert").pk == inside.seq
        other = threading.Thread(target=count_elsewhere)
        other.start()
        other.join(10)
        raise RuntimeError("the write fails after the task did")
    assert seen_outside == [0]  # not visible before commit
    assert not Delivery.objects.exists()
    assert not Event.objects.filter(kind="system.alert").exists()


@pytest.mark.django_db(transaction=True)
def test_a_claim_takes_due_rows_once_and_a_lapsed_lease_frees_them():
    first, second = row(), row(seq=2)
    now = timezone.now()
    later = row(seq=3, next_attempt_at=now + timedelta(seconds=30))
    taken = outbox.claim(KEY, limit=10, now=now)
    assert [d.pk for d in taken] == [first.pk, second.pk]
    token = taken[0].claim
    assert token and taken[1].claim == token
    assert taken[0].next_attempt_at == now + timedelta(seconds=outbox.LEASE)
    assert outbox.claim(KEY, limit=10, now=now) == []
    assert outbox.claim((None, "f" * 64), limit=10, now=now + timedelta(hours=1)) == []
    # The claimer died: once its lease has run out the rows are due again.
    lapsed = now + timedelta(seconds=outbox.LEASE + 1)
    again = outbox.claim(KEY, limit=10, now=lapsed)
    assert [d.pk for d in again] == [first.pk, second.pk, later.pk]
    assert again[0].claim != token
    # The first claim's outcome comes too late and changes nothing.
    assert outbox.settle(taken[0], None) is None
    assert fresh(first).status == "pending" and fresh(first).attempts == 0
    assert outbox.settle(again[0], None) == "delivered"
    done = fresh(first)
    assert done.status == "delivered" and done.delivered_at and done.claim == ""
    assert done.attempts == 1
    assert first.pk not in [
        d.pk for d in outbox.claim(KEY, limit=10, now=lapsed + timedelta(hours=1))
    ]


@pytest.mark.django_db(transaction=True)
def test_claimers_at_the_same_time_never_take_a_row_twice():
    rows = [row(seq=n) for n in range(40)]
    taken: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claimer():
        try:
            start.wait(10)
            while got := outbox.claim(KEY, limit=3):
                with lock:
                    taken.extend(d.pk for d in got)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(taken) == sorted(d.pk for d in rows)
    assert len(set(Delivery.objects.values_list("claim", flat=True))) > 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_try_waits_longer_each_time_with_jitter_and_the_last_fails(monkeypatch):
    delivery = row()
    draws = iter([0.0, 0.999, 0.5, 0.0])
    monkeypatch.setattr(outbox.random, "random", lambda: next(draws))
    waits = []
    for attempt in range(1, outbox.MAX_ATTEMPTS):
        (taken,) = outbox.claim(KEY, now=fresh(delivery).next_attempt_at)
        before = timezone.now()
        assert outbox.settle(taken, f"HTTP 500 (try {attempt})") == "pending"
        after = timezone.now()
        current = fresh(delivery)
        assert current.attempts == attempt and current.claim == ""
        assert current.last_error == f"HTTP 500 (try {attempt})"
        waits.append((current.next_attempt_at - before, current.next_attempt_at - after))
    expected = [1.0, 4 * (1 + 0.999 * outbox.JITTER), 16 * (1 + 0.5 * outbox.JITTER), 64.0]
    for (longest, shortest), wait in zip(waits, expected, strict=True):
        assert shortest.total_seconds() <= wait <= longest.total_seconds() + 0.001
    (taken,) = outbox.claim(KEY, now=fresh(delivery).next_attempt_at)
    assert outbox.settle(taken, "HTTP 500 (last)") == "failed"
    gone = fresh(delivery)
    assert (gone.status, gone.attempts, gone.last_error) == ("failed", 5, "HTTP 500 (last)")
    assert outbox.claim(KEY, now=timezone.now() + timedelta(days=1)) == []


def test_the_waits_grow_fourfold_and_jitter_only_adds():
    for attempts, base in enumerate(outbox.BACKOFF, start=1):
        for _ in range(50):
            assert base <= outbox.backoff(attempts) <= base * (1 + outbox.JITTER)


@pytest.mark.django_db(transaction=True)
def test_a_delivery_carries_the_same_id_on_every_try_and_is_marked_delivered(hook_url):
    receiver = hook_url  # answers 500 once, then 200
    session, _ = services.create_session(name="told twice")
    services.cancel_session(session.pk)
    assert wait_for(lambda: len(receiver.requests) == 2, 10), receiver.requests
    delivery = Delivery.objects.get()
    assert delivery.url_key == outbox.url_key(receiver.url) and delivery.webhook is None
    assert delivery.target == receiver.url  # nothing in it to hide
    ids = [headers["X-Switchboard-Delivery"] for _, _, headers in receiver.requests]
    assert ids == [str(delivery.pk)] * 2
    _, _, headers = receiver.requests[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "switchboard-webhooks"
    assert receiver.bodies[0] == receiver.bodies[1] == delivery.payload
    assert receiver.bodies[0]["event"] == "session.cancelled"
    assert wait_for(lambda: fresh(delivery).status == "delivered", 5)
    done = fresh(delivery)
    assert done.attempts == 2 and done.last_error == "HTTP 500" and done.delivered_at


@pytest.mark.django_db(transaction=True)
def test_a_delivery_whose_receiver_went_away_fails_at_once():
    hook = Webhook.objects.create(url="http://127.0.0.1:9/hook", name="off", active=False)
    assert outbox.resolve(Delivery(webhook=hook)) == (None, "the webhook is turned off")
    assert outbox.resolve(Delivery(webhook_id=hook.pk + 1)) == (None, "the webhook was deleted")
    delivery = row()
    (taken,) = outbox.claim(KEY)
    assert outbox.attempt(taken) == "failed"
    gone = fresh(delivery)
    assert gone.attempts == 1 and "no longer in SWITCHBOARD_WEBHOOKS" in gone.last_error


@pytest.mark.django_db(transaction=True)
def test_a_deliverer_outside_a_server_stops_once_nothing_is_pending(hook_url, monkeypatch):
    deliverer = outbox.Deliverer()
    monkeypatch.setattr(outbox, "deliverer", deliverer)
    session, _ = services.create_session(name="stopping")
    services.cancel_session(session.pk)
    assert deliverer.thread is not None  # started by the commit
    assert wait_for(lambda: fresh(Delivery.objects.get()).status == "delivered", 10)
    assert wait_for(lambda: deliverer.thread is None, 10)
    assert not deliverer.lanes and not deliverer.serving


@pytest.mark.django_db(transaction=True)
def test_a_serving_deliverer_stops_when_told_and_leaves_what_is_pending(monkeypatch):
    deliverer = outbox.Deliverer()
    monkeypatch.setattr(outbox, "deliverer", deliverer)
    waiting = row(next_attempt_at=timezone.now() + timedelta(seconds=60))
    deliverer.serve()
    assert wait_for(lambda: deliverer.thread is not None and deliverer.thread.is_alive(), 5)
    thread = deliverer.thread
    deliverer.stop()
    assert not thread.is_alive() and deliverer.thread is None and not deliverer.serving
    assert fresh(waiting).status == waiting.status and fresh(waiting).attempts == 0
    waiting.delete()
    deliverer.nudge()  # a later commit starts it again; not serving, it ends
    assert deliverer.thread is not None
    assert wait_for(lambda: deliverer.thread is None, 10)


# --- the admin --------------------------------------------------------------------


@pytest.fixture
def rows(db):
    now = timezone.now()
    return {
        "failed": row(status="failed", attempts=5, last_error="HTTP 500"),
        "waiting": row(seq=2, attempts=1, next_attempt_at=now + timedelta(seconds=60)),
        "delivered": row(seq=3, status="delivered", attempts=1, delivered_at=now),
        "trying": row(seq=4, claim="c" * 32, next_attempt_at=now + timedelta(seconds=30)),
    }


def test_the_admin_lists_what_is_not_delivered_newest_first(client, admin_user, rows):
    client.force_login(admin_user)
    page = client.get("/admin/operations/delivery/")
    assert page.status_code == 200
    shown = [d.pk for d in page.context["cl"].result_list]
    assert shown == [rows[name].pk for name in ("trying", "waiting", "failed")]
    page = client.get("/admin/operations/delivery/?status=delivered")
    assert [d.pk for d in page.context["cl"].result_list] == [rows["delivered"].pk]
    page = client.get("/admin/operations/delivery/?status=all")
    assert len(page.context["cl"].result_list) == 4
    assert client.get(f"/admin/operations/delivery/{rows['failed'].pk}/change/").status_code == 200
    assert client.get("/admin/operations/delivery/add/").status_code == 403


def test_retry_now_makes_failed_and_waiting_rows_due_and_leaves_the_rest(client, admin_user, rows):
    client.force_login(admin_user)
    answer = client.post(
        "/admin/operations/delivery/?status=all",
        {"action": "retry_now", "_selected_action": [d.pk for d in rows.values()]},
        follow=True,
    )
    assert answer.status_code == 200
    assert "2 deliveries to be tried now. 2 left as they are" in answer.content.decode()
    now = timezone.now()
    for name in ("failed", "waiting"):
        current = fresh(rows[name])
        assert current.status == "pending" and current.next_attempt_at <= now
    assert fresh(rows["delivered"]).status == "delivered"
    assert fresh(rows["trying"]).claim == "c" * 32
    # A failed row gets one more try, then fails again.
    taken = outbox.claim(KEY, limit=10)
    assert [d.pk for d in taken] == [rows["failed"].pk, rows["waiting"].pk]
    assert outbox.settle(taken[0], "HTTP 500") == "failed"
    assert outbox.settle(taken[1], "HTTP 500") == "pending"


def test_the_outbox_admin_is_for_staff_only(client, worker_user, rows):
    client.force_login(worker_user)
    assert client.get("/admin/operations/delivery/").status_code == 302
    client.post(
        "/admin/operations/delivery/",
        {"action": "retry_now", "_selected_action": [rows["failed"].pk]},
    )
    assert fresh(rows["failed"]).status == "failed"

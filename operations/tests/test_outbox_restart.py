"""The outbox across a crash: an alert committed by a server that is then
killed (SIGKILL) is delivered by the next one, once."""

import random
import socket
import time

import pytest

from conftest import Server
from operations.models import Delivery
from operations.tests.test_alerts import Receiver, wait_for

pytestmark = pytest.mark.timeout(150)


def ports(count: int, low: int = 18700, high: int = 18800) -> list[int]:
    """Free ports on 127.0.0.1 in [low, high)."""
    found = []
    candidates = list(range(low, high))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError(f"no {count} free ports in {low}-{high - 1}")


@pytest.mark.django_db(transaction=True)
def test_an_alert_committed_before_a_kill_reaches_the_receiver_once_after_restart(admin_token):
    hook_port, server_port = ports(2)
    env = {
        "SWITCHBOARD_WEBHOOKS": f"http://127.0.0.1:{hook_port}/hook",
        "SWITCHBOARD_OUTBOX_POLL_SECONDS": "0.5",
    }
    first = Server(port=server_port, **env).start()
    second = receiver = None
    try:
        api = first.client(admin_token)
        session = api.create_session("restarted")
        task = api.request("POST", f"sessions/{session['id']}/tasks", {"name": "step"})
        api.update_task(task["id"], status="failed", error="exit status 1")
        # The alert's row was committed with the failure; nobody listens yet,
        # so the server's first try fails and a retry is scheduled.
        assert wait_for(lambda: Delivery.objects.filter(attempts__gte=1).exists(), 15)
        first.kill()
        delivery = Delivery.objects.get()
        assert delivery.status == "pending" and delivery.claim == ""
        assert delivery.event == "task.failed" and "Connection" in delivery.last_error
        assert delivery.payload["task"]["id"] == task["id"]

        receiver = Receiver(port=hook_port)
        second = Server(port=server_port, **env).start()
        assert wait_for(lambda: len(receiver.requests) >= 1, 30), second.logs()[-2000:]
        assert wait_for(lambda: Delivery.objects.get().status == "delivered", 10)
        time.sleep(2)  # four more looks at the outbox: nothing goes out again
        assert len(receiver.requests) == 1
        method, path, headers = receiver.requests[0]
        assert (method, path) == ("POST", "/hook")
        assert headers["X-Switchboard-Delivery"] == str(delivery.pk)
        body = receiver.bodies[0]
        assert body["event"] == "task.failed" and body["seq"] == delivery.seq
        assert body["text"].endswith("failed: exit status 1")
        done = Delivery.objects.get()
        assert done.attempts == delivery.attempts + 1 and done.delivered_at is not None
    finally:
        for server in (first, second):
            if server is not None:
                server.stop()
                server.log.unlink(missing_ok=True)
        if receiver is not None:
            receiver.close()

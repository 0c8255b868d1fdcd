"""The demo's Celery worker (on a folder as its broker, or on Redis when
REDIS_URL is set) against a real server: a canvas is one session of three."""

import time

import pytest

from operations.celery_demo import CeleryDemo, send_some
from sessions_app.models import Session, Task

pytestmark = pytest.mark.timeout(90)


def test_the_demo_worker_reports_a_canvas_as_one_session_of_three_tasks(
    fresh_server, admin_token, tmp_path
):
    srv = fresh_server()
    demo = CeleryDemo(srv.url, admin_token, str(tmp_path / "broker"), every=1000)
    demo.start()
    try:
        root = send_some(demo.sender, 99)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            tasks = Task.objects.filter(session__external_id=root)
            if tasks.count() == 3 and not tasks.exclude(status__in=["completed", "failed"]):
                break
            time.sleep(0.2)
    finally:
        demo.stop()
    session = Session.objects.get(external_id=root)
    assert session.name == "demo.fetch"
    names = list(session.tasks.order_by("id").values_list("name", "status"))
    assert [name for name, _ in names] == ["demo.fetch", "demo.transform", "demo.load"], names
    assert all(status in ("completed", "failed") for _, status in names), names
    assert session.tasks.get(name="demo.transform").progress == 100

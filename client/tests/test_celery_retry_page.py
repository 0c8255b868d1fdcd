"""Retry pressed in the workspace page (real headless Chromium) on a failed
Celery task: a real worker runs it again as attempt 2 of the same task."""

import os

import pytest
from playwright.sync_api import expect

from client.tests.test_celery import BROKER, broker, ended, wait, worker  # noqa: F401 (fixtures)
from client.tests.test_celery_retry import failed_once
from project.tests.test_pages import browse, chromium  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(180)


def test_retry_pressed_in_the_page_runs_a_failed_celery_task_again_as_attempt_2(
    worker,  # noqa: F811
    browse,  # noqa: F811
    admin_token,
    tmp_path,
):
    srv, celery = worker(SWITCHBOARD_CELERY_BROKER_URL=BROKER)
    api = srv.client(admin_token)
    failed = failed_once(api, celery, str(tmp_path / "flag"), word="from the page")
    page = browse(srv, f"/sessions/{failed['session_id']}/")
    row = page.locator(f"#tasks tr[data-id='{failed['id']}']")
    expect(row.locator(".status")).to_have_attribute("data-status", "failed")
    expect(row).to_contain_text("RuntimeError: first time")

    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#toasts")).to_contain_text("Attempt 2 sent to Celery: sbtest.flag.")
    expect(row.locator(".status")).to_have_attribute("data-status", "completed", timeout=30_000)
    expect(row.get_by_role("button", name="Retry")).to_have_count(0)
    expect(page.locator("#activity li").first).to_contain_text("admin retried task sbtest.flag")

    done = wait(lambda: ended(api, failed["external_id"]), 30, celery.logs)
    assert (done["id"], done["attempt"], done["status"]) == (failed["id"], 2, "completed")
    assert done["result"] == {"word": "from the page"}
    assert page.errors == []
    if shots := os.environ.get("SWITCHBOARD_SHOTS"):  # a look at the page, on request
        page.screenshot(path=f"{shots}/workspace-celery-retry.png", full_page=True)

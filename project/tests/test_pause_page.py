"""The workspace's Pause / Resume buttons and its activity list, in real
headless Chromium against a real daphne server."""

import os

import pytest
from playwright.sync_api import expect

from project.tests.test_pages import browse, chromium  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.timeout(180)]


def test_pause_and_resume_buttons_steer_the_task_and_the_activity_says_who(
    live,
    browse,  # noqa: F811
    admin_token,
):
    api = live.client(admin_token)
    session = api.create_session("steer me")
    task = api.create_task(session["id"], "long step")
    api.update_task(task["id"], status="running")
    api.cancel_task(api.create_task(session["id"], "never ran")["id"])  # stored before the page
    page = browse(live, f"/sessions/{session['id']}/")
    other = browse(live, f"/sessions/{session['id']}/")
    activity = page.locator("#activity li")
    expect(activity).to_have_count(1)
    expect(activity.first).to_contain_text("admin cancelled task never ran")

    row = page.locator(f"#tasks tr[data-id='{task['id']}']")
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".status")).to_have_attribute("data-paused", "true")
    other_row = other.locator(f"#tasks tr[data-id='{task['id']}']")
    expect(other_row.get_by_role("button", name="Resume")).to_be_visible()
    assert api.get_task(task["id"])["pause_requested"] is True
    expect(activity).to_have_count(2)
    expect(activity.first).to_contain_text("admin paused task long step")
    expect(other.locator("#activity li").first).to_contain_text("admin paused task long step")

    other_row.get_by_role("button", name="Resume").click()
    expect(row.locator(".status")).to_have_attribute("data-paused", "false")
    expect(row.get_by_role("button", name="Pause")).to_be_visible()
    assert api.get_task(task["id"])["pause_requested"] is False
    expect(activity.first).to_contain_text("admin resumed task long step")

    # An ended task has neither button; a retry from the API shows up live.
    api.update_task(task["id"], status="failed", error="boom")
    expect(row.get_by_role("button", name="Pause")).to_have_count(0)
    api.request("POST", f"tasks/{task['id']}/retry", {})
    expect(activity.first).to_contain_text("admin retried task long step")
    expect(activity).to_have_count(4)
    assert page.errors == [] and other.errors == []
    if shots := os.environ.get("SWITCHBOARD_SHOTS"):  # a look at the page, on request
        page.screenshot(path=f"{shots}/workspace-activity.png", full_page=True)

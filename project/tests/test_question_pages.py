"""Questions in the pages, in real headless Chromium against a real daphne:
the answer clicked in one page reaches the worker and every other page."""

import os
import threading

import pytest
from playwright.sync_api import expect

from project.tests import test_pages

pytestmark = [pytest.mark.timeout(180)]

# The browser fixtures of the page tests.
chromium, browse = test_pages.chromium, test_pages.browse


def test_a_worker_asks_with_choices_and_gets_the_answer_clicked_in_chromium(
    live, browse, admin_token
):
    api = live.client(admin_token)
    session = api.create_session("release")
    task = api.create_task(session["id"], "deploy")
    api.update_task(task["id"], status="running")
    workspace = browse(live, f"/sessions/{session['id']}/#task-{task['id']}")
    tasks = browse(live, "/tasks/")
    dashboard = browse(live, "/")
    for page in (workspace, tasks, dashboard):
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(dashboard.locator("#questions")).to_be_hidden()

    got = {}
    worker = threading.Thread(
        target=lambda: got.update(
            answer=api.ask(task["id"], "Deploy <b>to production</b>?", choices=["deploy", "hold"])
        ),
        daemon=True,
    )
    worker.start()
    for page in (workspace, tasks, dashboard):
        expect(page.locator("#questions .n")).to_have_text("1")
    expect(dashboard.locator("#toasts")).to_contain_text(
        "A task asks: Deploy <b>to production</b>?"
    )
    card = workspace.locator("#session-questions .question")
    expect(card).to_contain_text("“deploy” asks")
    run_view = workspace.locator("#task-questions .question")
    expect(run_view.get_by_role("button")).to_have_text(["deploy", "hold"])
    expect(workspace.locator(f"#tasks tr[data-id='{task['id']}']")).to_have_attribute(
        "data-asking", "true"
    )
    assert workspace.locator(".question b").count() == 0  # the prompt is text
    if "SWITCHBOARD_SCREENSHOTS" in os.environ:
        workspace.screenshot(path=os.environ["SWITCHBOARD_SCREENSHOTS"])

    run_view.get_by_role("button", name="hold").click()
    worker.join(30)
    assert got == {"answer": "hold"}
    for page in (workspace, tasks, dashboard):
        expect(page.locator("#questions")).to_be_hidden()
    expect(workspace.locator(".question")).to_have_count(0)
    answered = api.request("GET", "questions", params={"task": task["id"]})["results"][0]
    assert answered["answered_by"] == "admin"
    # Who answered, live in the activity list, and there again after a reload.
    line = "admin answered question Deploy <b>to production</b>?"
    expect(workspace.locator("#activity li").first).to_contain_text(line)
    workspace.reload()
    expect(workspace.locator("#activity li").first).to_contain_text(line)
    for page in (workspace, tasks, dashboard):
        assert page.errors == []


def test_a_free_text_question_is_answered_in_its_field_and_leaves_every_page(
    live, browse, admin_token
):
    api = live.client(admin_token)
    session = api.create_session("free text")
    task = api.create_task(session["id"], "name it")
    page = browse(live, f"/sessions/{session['id']}/")
    other = browse(live, f"/sessions/{session['id']}/")
    question = api.request("POST", f"tasks/{task['id']}/questions", {"prompt": "Name?"})
    expect(page.locator("#session-questions input")).to_be_visible()
    expect(other.locator("#session-questions .question")).to_have_count(1)
    page.locator("#session-questions input").fill("north <i>wing</i>")
    page.locator("#session-questions input").press("Enter")
    expect(other.locator("#session-questions .question")).to_have_count(0)
    expect(page.locator("#questions")).to_be_hidden()
    assert api.request("GET", f"questions/{question['id']}")["answer"] == "north <i>wing</i>"
    # One answered elsewhere leaves the page too.
    second = api.request("POST", f"tasks/{task['id']}/questions", {"prompt": "Colour?"})
    expect(page.locator("#questions .n")).to_have_text("1")
    api.request("POST", f"questions/{second['id']}/answer", {"answer": "red"})
    expect(page.locator("#session-questions .question")).to_have_count(0)
    assert page.errors == [] and other.errors == []

"""The pages in real headless Chromium against a real daphne server."""

import os
import re

import pytest
from django.test import Client as DjangoClient
from playwright.sync_api import expect, sync_playwright

from logs_app.models import LogEntry

pytestmark = [pytest.mark.timeout(180)]

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def chromium():
    # Playwright's sync API keeps an event loop running in this thread; the
    # test's own ORM calls are still plain synchronous ones.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def browse(chromium, admin_user):
    """A logged-in staff browser page on a server."""
    contexts = []

    def open_page(server, path="/", block_sockets=False):
        web = DjangoClient()
        web.force_login(admin_user)
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies(
            [{"name": "sessionid", "value": web.cookies["sessionid"].value, "url": server.url}]
        )
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        if block_sockets:
            page.clock.install()
            page.add_init_script(
                "window.WebSocket = class { constructor() { setTimeout(() => this.onclose && this.onclose(), 10); }"
                " send() {} close() {} };"
            )
        page.goto(server.url + path)
        return page

    yield open_page
    for context in contexts:
        context.close()


def test_not_logged_in_redirects_to_the_login_page(live, chromium):
    context = chromium.new_context()
    page = context.new_page()
    page.goto(live.url + "/sessions/")
    assert "/admin/login/" in page.url
    context.close()


def test_every_page_follows_api_changes_without_a_reload(live, browse, admin_token):
    api = live.client(admin_token)
    dashboard = browse(live, "/")
    expect(dashboard.locator("#connection")).to_have_attribute("data-state", "connected")
    session = api.create_session("nightly import")
    api.update_session(session["id"], status="running")
    expect(dashboard.locator("#running")).to_contain_text("nightly import")
    expect(dashboard.locator(".card[data-status=running] [data-f=n]")).to_have_text("1")

    sessions = browse(live, "/sessions/?status=running")
    task = api.create_task(session["id"], "load rows")
    tasks = browse(live, "/tasks/")
    workspace = browse(live, f"/sessions/{session['id']}/")
    expect(workspace.locator("#tasks")).to_contain_text("load rows")

    api.update_task(task["id"], status="running", progress=42.5, message="halfway")
    expect(workspace.locator(f"#tasks tr[data-id='{task['id']}'] .bar b")).to_have_text("42.5%")
    expect(workspace.locator("#gantt rect.t[data-status=running]")).to_have_count(1)
    expect(tasks.locator(f"tr[data-id='{task['id']}']")).to_contain_text("halfway")
    api.log(session["id"], [{"message": "rows loaded", "level": "WARNING"}])
    expect(workspace.locator("#log")).to_contain_text("rows loaded")

    api.update_task(task["id"], status="completed")
    api.update_session(session["id"], status="completed")
    expect(workspace.locator("#toasts")).to_contain_text("completed")
    expect(sessions.locator("#rows")).not_to_contain_text("nightly import")  # filter: running
    expect(dashboard.locator("#running-empty")).to_be_visible()
    for page in (dashboard, sessions, tasks, workspace):
        assert page.errors == []


def test_a_log_line_with_html_is_shown_as_text_and_runs_nothing(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("<b>bold session</b>")
    evil = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    api.log(session["id"], [{"message": evil, "level": "ERROR"}])
    for path in (f"/sessions/{session['id']}/", f"/sessions/{session['id']}/logs/"):
        page = browse(live, path)
        expect(page.locator(".logrow .msg").first).to_have_text(evil)
        assert page.locator(".logrow img, .logrow script, h1 b").count() == 0
        assert page.evaluate("window.pwned") is None
    expect(page.locator("h1")).to_contain_text("<b>bold session</b>")


def test_ansi_colours_stacks_and_matches_are_drawn(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("colours")
    api.log(
        session["id"],
        [
            {"message": "\x1b[31mred alert\x1b[0m plain", "level": "ERROR"},
            {
                "message": "Traceback (most recent call last):\n  File x\nValueError: bad",
                "level": "ERROR",
            },
            {"message": "needle in a haystack"},
        ],
    )
    page = browse(live, f"/sessions/{session['id']}/logs/?q=needle")
    expect(page.locator(".logrow mark")).to_have_text("needle")
    page = browse(live, f"/sessions/{session['id']}/logs/")
    expect(page.locator(".logrow .ansi-31")).to_have_text("red alert")
    stack = page.locator(".logrow").filter(has_text="Traceback")
    expect(stack.locator(".more")).to_have_text("+2 lines")
    stack.click()
    expect(page.locator("#detail")).to_contain_text("ValueError: bad")
    page.keyboard.press("e")
    expect(page.locator(".logrow.target")).to_have_count(1)


def test_the_cancel_button_cancels_for_everyone(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("cancel me")
    task = api.create_task(session["id"], "long step")
    api.update_task(task["id"], status="running")
    page = browse(live, f"/sessions/{session['id']}/")
    other = browse(live, f"/sessions/{session['id']}/")
    row = page.locator(f"#tasks tr[data-id='{task['id']}']")
    row.get_by_role("button", name="Cancel").click()
    expect(row.locator(".status")).to_have_attribute("data-cancelling", "true")
    expect(other.locator(f"#tasks tr[data-id='{task['id']}'] .status")).to_have_attribute(
        "data-cancelling", "true"
    )
    assert api.get_task(task["id"])["cancel_requested"] is True
    api.update_task(task["id"], status="cancelled")
    expect(other.locator(f"#tasks tr[data-id='{task['id']}'] .status")).to_have_text("cancelled")


def test_the_page_shows_a_lost_connection_and_catches_up(fresh_server, browse, admin_token):
    srv = fresh_server()
    api = srv.client(admin_token)
    session = api.create_session("restart")
    task = api.create_task(session["id"], "step")
    page = browse(srv, f"/sessions/{session['id']}/")
    indicator = page.locator("#connection")
    expect(indicator).to_have_attribute("data-state", "connected")
    srv.kill()
    expect(indicator).to_have_attribute("data-state", "reconnecting")
    expect(indicator.locator(".label")).to_have_text(re.compile(r"reconnecting \d/5"))
    expect(indicator.locator(".retry")).to_be_visible()
    srv.start()
    api.update_task(task["id"], progress=10, message="one")
    api.update_task(task["id"], progress=77, message="two")
    retry = indicator.locator(".retry")
    if retry.is_visible():
        retry.click()
    expect(indicator).to_have_attribute("data-state", "connected", timeout=15000)
    expect(page.locator(f"#tasks tr[data-id='{task['id']}'] .bar b")).to_have_text("77%")
    expect(page.locator(f"#tasks tr[data-id='{task['id']}']")).to_contain_text("two")


def test_pages_keep_updating_by_polling_when_websockets_are_blocked(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("no sockets here")
    task = api.create_task(session["id"], "polled")
    page = browse(live, f"/sessions/{session['id']}/", block_sockets=True)
    for _ in range(6):  # the five backoff waits, then the fallback
        page.clock.run_for(10_000)
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    expect(page.locator("#connection .label")).to_have_text("offline · polling")
    expect(page.locator("#tasks")).to_contain_text("polled")
    api.update_task(task["id"], status="running", progress=64)
    page.clock.run_for(5_000)
    expect(page.locator(f"#tasks tr[data-id='{task['id']}'] .bar b")).to_have_text("64%")


def test_the_log_viewer_pauses_counts_jumps_and_pages_back(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("chatty")
    for start in range(0, 1200, 400):
        api.log(session["id"], [{"message": f"line {n}"} for n in range(start, start + 400)])
    page = browse(live, f"/sessions/{session['id']}/logs/")
    log = page.locator("#log")
    expect(page.locator("#status")).to_contain_text("100 lines loaded")
    expect(log).to_contain_text("line 1199")
    # Scroll to the top: older pages load until the first line.
    for _ in range(10):
        log.evaluate("box => { box.scrollTop = 0; box.dispatchEvent(new Event('scroll')); }")
        page.wait_for_timeout(200)
        if "from the first line" in page.locator("#status").inner_text():
            break
    expect(page.locator("#status")).to_contain_text("1,200 lines loaded")
    log.evaluate("box => { box.scrollTop = 0; box.dispatchEvent(new Event('scroll')); }")
    expect(log.locator(".logrow").first).to_contain_text("line 0")
    # Paused away from the bottom, new lines are counted, errors apart.
    api.log(session["id"], [{"message": "new one"}, {"message": "bad one", "level": "ERROR"},
                            {"message": "worse", "level": "CRITICAL"}])  # fmt: skip
    expect(page.locator("#paused button")).to_have_text("3 new (2 errors) · jump to latest")
    page.locator("#paused button").click()
    expect(log).to_contain_text("worse")
    expect(page.locator("#paused")).to_be_hidden()
    # A filter in the URL narrows it, and a permalink opens at its line.
    page.goto(f"{live.url}/sessions/{session['id']}/logs/?level=ERROR")
    expect(log.locator(".logrow")).to_have_count(2)
    target = LogEntry.objects.get(message="line 500").pk
    page.goto(f"{live.url}/sessions/{session['id']}/logs/#L{target}")
    expect(page.locator(f"#L{target}")).to_have_class(re.compile("target"))
    expect(page.locator("#detail")).to_contain_text("line 500")


def test_a_flood_shows_a_skipped_row_that_loads_exactly_those_lines(
    fresh_server, browse, admin_token
):
    srv = fresh_server(SWITCHBOARD_LOG_LINES_PER_SECOND="1", SWITCHBOARD_LOG_LINES_BURST="50")
    api = srv.client(admin_token)
    session = api.create_session("flood")
    page = browse(srv, f"/sessions/{session['id']}/logs/")
    expect(page.locator("#status")).to_contain_text("live")
    for batch in range(3):
        api.log(session["id"], [{"message": f"flood {batch}-{n}", "level": "ERROR" if n < 2 else "INFO"}
                                for n in range(50)])  # fmt: skip
    skipped = page.locator(".logrow.skipped button")
    expect(skipped).to_have_text("100 lines skipped (4 errors) — load them")
    skipped.click()
    expect(page.locator("#status")).to_contain_text("150 lines loaded")
    expect(page.locator(".logrow.skipped")).to_have_count(0)
    page.keyboard.press("G")
    expect(page.locator("#log")).to_contain_text("flood 2-49")
    # Only the rows in sight exist: the list is virtualized.
    assert page.locator(".logrow").count() < 80


def test_tabs_of_one_browser_stay_in_sync(live, chromium, admin_user, admin_token):
    web = DjangoClient()
    web.force_login(admin_user)
    context = chromium.new_context()
    context.add_cookies(
        [{"name": "sessionid", "value": web.cookies["sessionid"].value, "url": live.url}]
    )
    api = live.client(admin_token)
    session = api.create_session("two tabs")
    task = api.create_task(session["id"], "shared")
    tabs = [context.new_page() for _ in range(3)]
    for tab in tabs:
        tab.goto(f"{live.url}/sessions/{session['id']}/")
        expect(tab.locator("#connection")).to_have_attribute("data-state", "connected")
    tabs[0].locator(f"#tasks tr[data-id='{task['id']}']").get_by_role(
        "button", name="Cancel"
    ).click()
    for tab in tabs:
        expect(tab.locator(f"#tasks tr[data-id='{task['id']}'] .status")).to_have_text("cancelled")
    context.close()

"""The pages in real headless Chromium against a real daphne server."""

import os
import re

import pytest
from django.test import Client as DjangoClient
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect, sync_playwright
from switchboard_client import Client

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
    # A run of a second or two: the timeline's axis names each second once.
    expect(workspace.locator("#gantt rect.t[data-status=completed]")).to_have_count(1)
    ticks = workspace.locator("#gantt text.tick").all_inner_texts()
    assert ticks and len(ticks) == len(set(ticks)), ticks
    expect(sessions.locator("#rows")).not_to_contain_text("nightly import")  # filter: running
    expect(dashboard.locator("#running-empty")).to_be_visible()
    for page in (dashboard, sessions, tasks, workspace):
        assert page.errors == []


def test_the_dashboards_failures_show_a_session_with_a_failed_task(live, browse, admin_token):
    api = live.client(admin_token)
    dashboard = browse(live, "/")
    expect(dashboard.locator("#connection")).to_have_attribute("data-state", "connected")
    session = api.create_session("flaky import", status="running")
    task = api.create_task(session["id"], "load rows")
    api.create_task(session["id"], "index rows")
    expect(dashboard.locator("#running")).to_contain_text("flaky import")
    expect(dashboard.locator("#failures")).not_to_contain_text("flaky import")
    # Still running (another task is not done), yet it has a failure to show.
    api.update_task(task["id"], status="failed", error="no such table")
    expect(dashboard.locator("#failures")).to_contain_text("flaky import")
    ended = api.create_session("broken export", status="running")
    api.update_session(ended["id"], status="failed")
    expect(dashboard.locator("#failures")).to_contain_text("broken export")
    assert dashboard.errors == []


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


def test_a_log_lines_extra_fields_are_shown_as_text(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("fields")
    extra = {"user": "<b>ann</b>", "rows": 3, "tags": ["a", "b"]}
    api.log(session["id"], [{"message": "loaded", "extra": extra}, {"message": "plain"}])
    page = browse(live, f"/sessions/{session['id']}/logs/")
    rows = page.locator(".logrow")
    # Key order is the database's (PostgreSQL's jsonb sorts keys).
    fields = rows.first.locator(".extra")
    for shown in ("user=<b>ann</b>", "rows=3", 'tags=["a","b"]'):
        expect(fields).to_contain_text(shown)
    assert rows.nth(1).locator(".extra").count() == 0
    rows.first.click()
    expect(page.locator("#detail .extra")).to_contain_text('"rows": 3')
    assert page.locator(".logrow b, #detail b").count() == 0


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
    expect(page.locator(".logrow .a-f1")).to_have_text("red alert")
    stack = page.locator(".logrow").filter(has_text="Traceback")
    expect(stack.locator(".more")).to_have_text("+2 lines")
    stack.click()
    expect(page.locator("#detail")).to_contain_text("ValueError: bad")
    page.keyboard.press("e")
    expect(page.locator(".logrow.target")).to_have_count(1)


def test_an_agent_runs_steps_show_in_order_with_its_output(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("agent")
    task = api.create_task(session["id"], "answer")
    api.status(task["id"], "thinking", "<b>planning</b>")
    api.output(task["id"], "Looking it up. ")
    page = browse(live, f"/sessions/{session['id']}/#task-{task['id']}")
    output = page.locator("#output")
    expect(output.locator(".step")).to_have_count(1)
    expect(output.locator(".step").first).to_contain_text("thinking — <b>planning</b>")
    assert output.locator("b").count() == 0  # shown as text
    api.status(task["id"], "tool_calling", tool="search", args={"q": "tides"})
    api.status(task["id"], "tool_completed", tool="search", error="timed out")
    api.output(task["id"], "Done.", final=True)
    expect(output.locator(".step")).to_have_count(3)
    expect(output.locator(".step").nth(1)).to_contain_text("tool calling search")
    expect(output.locator(".step.failed")).to_contain_text("error: timed out")
    expect(output.locator(".step.failed")).to_contain_text("tool failed search")
    expect(output.locator(".step.failed")).not_to_contain_text("completed")
    expect(output).to_contain_text("Done.")
    # Reloaded, the steps stand where they came between the chunks.
    page.reload()
    expect(output.locator(".step")).to_have_count(3)
    text = output.inner_text().lower()
    assert text.index("thinking") < text.index("looking it up.") < text.index("tool calling")
    assert text.index("tool failed") < text.index("done.")
    assert page.errors == []


def test_the_run_view_draws_a_terminal_its_steps_and_its_facts(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("eval", metadata={"host": "<i>worker-1</i>"})
    task = api.create_task(session["id"], "cases")
    api.update_task(task["id"], status="running", message="starting")
    page = browse(live, f"/sessions/{session['id']}/#task-{task['id']}")
    output = page.locator("#output")
    expect(page.locator("#session-meta")).to_contain_text("<i>worker-1</i>")
    # Colours, and a tqdm bar that rewrites one line with carriage returns.
    api.output(task["id"], "\x1b[1;32mPASS\x1b[0m first\n")
    for done in (1, 5, 10):
        api.output(task["id"], f"\r{done * 10:3d}%|{'#' * done}{' ' * (10 - done)}| {done}/10")
    api.output(task["id"], "\nend\n")
    expect(output.locator(".ol").last).to_have_text("end")
    expect(output.locator(".a-f2.a-bold")).to_have_text("PASS")
    lines = output.locator(".ol").all_inner_texts()
    assert lines == ["PASS first", "100%|##########| 10/10", "end"], lines
    assert "\x1b" not in output.inner_text()
    # A step shows in the task's row while it runs; the keyword filter finds steps.
    row = page.locator(f"#tasks tr[data-id='{task['id']}']")
    api.status(task["id"], "tool_calling", tool="search", args={"q": "x" * 200})
    expect(row.locator("[data-f=message]")).to_have_text("Calling search…")
    expect(output.locator(".step details summary")).to_contain_text("args")  # long args fold
    api.status(task["id"], "tool_completed", tool="search", result={"hits": 2})
    api.status(task["id"], "thinking", "next")
    expect(output.locator(".step")).to_have_count(3)
    expect(output.locator(".step").nth(1).locator(".took")).to_have_text(re.compile(r"\d+\.\d+ s"))
    page.fill("#output-filter", "SEARCH")
    expect(page.locator("#output-found")).to_have_text("2 of 3 steps")
    expect(output.locator(".step:visible")).to_have_count(2)
    expect(output.locator(".ol:visible")).to_have_count(0)
    page.fill("#output-filter", "")
    expect(output.locator(".ol:visible")).to_have_count(3)
    # A newer message wins the row back; the full error and the result are shown.
    api.progress(task["id"], 50, message="half way")
    expect(row.locator("[data-f=message]")).to_have_text("half way")
    api.update_task(
        task["id"], status="failed", error="Traceback:\n  line 1\nValueError: <b>bad</b>"
    )
    facts = page.locator("#task-facts")
    expect(facts.locator("dd.error")).to_have_text("Traceback:\n  line 1\nValueError: <b>bad</b>")
    assert page.locator("#task-facts b, #session-meta i").count() == 0
    assert page.errors == []


def test_the_run_view_sums_an_agent_runs_tokens_in_one_line(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("support bot")
    task = api.create_task(session["id"], "tides")
    api.update_task(task["id"], status="running", details={"total_tokens": 10, "input_tokens": 8})
    page = browse(live, f"/sessions/{session['id']}/#task-{task['id']}")
    facts = page.locator("#task-facts")
    expect(facts).to_contain_text("10 (8 in, ? out)")
    tokens = {"input_tokens": 4500, "output_tokens": 55, "total_tokens": 4555, "model_calls": 3}
    api.update_task(task["id"], details={**tokens, "host": "w-1"})
    expect(facts).to_contain_text("4,555 (4,500 in, 55 out) · 3 model calls")
    details = facts.locator("dt", has_text="Details").locator("xpath=following-sibling::dd[1]")
    expect(details).to_have_text('{"host":"w-1"}')
    assert page.errors == []


def test_a_session_of_one_task_shows_its_output_without_a_click(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("one job")
    task = api.create_task(session["id"], "the only step")
    page = browse(live, f"/sessions/{session['id']}/")
    expect(page.locator("#output-task")).to_contain_text("the only step")
    api.output(task["id"], "hello from the only step\n")
    expect(page.locator("#output")).to_contain_text("hello from the only step")
    # With a second task, nothing is chosen for the user.
    other = api.create_session("two jobs")
    for name in ("first", "second"):
        api.create_task(other["id"], name)
    page.goto(f"{live.url}/sessions/{other['id']}/")
    expect(page.locator("#tasks tr")).to_have_count(2)
    expect(page.locator("#output-task")).not_to_contain_text("first")
    expect(page.locator("#output-task")).not_to_contain_text("second")


def test_the_output_pane_keeps_a_bounded_number_of_lines(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("chatty")
    task = api.create_task(session["id"], "prints")
    page = browse(live, f"/sessions/{session['id']}/#task-{task['id']}")
    output = page.locator("#output")
    expect(page.locator("#output-task")).to_contain_text("prints")
    api.output(task["id"], "".join(f"line {n}\n" for n in range(2500)))
    expect(output.locator(".ol").last).to_have_text("line 2499")
    assert output.locator(".ol").count() == 2000
    expect(output.locator(".trimmed")).to_have_text("500 earlier lines are not shown here.")
    expect(output.locator(".ol").first).to_have_text("line 500")


def test_a_page_whose_login_is_gone_says_signed_out(live, browse):
    from django.contrib.sessions.models import Session as LoginSession

    page = browse(live, "/")
    indicator = page.locator("#connection")
    expect(indicator).to_have_attribute("data-state", "connected")
    LoginSession.objects.all().delete()  # logged out elsewhere
    expect(indicator).to_have_attribute("data-state", "signed_out", timeout=20_000)
    link = indicator.get_by_role("link", name="log in again")
    expect(link).to_have_attribute("href", "/admin/login/?next=%2F")
    # It stops: no reconnecting, no polling.
    page.wait_for_timeout(1500)
    expect(indicator).to_have_attribute("data-state", "signed_out")
    link.click()
    expect(page).to_have_url(re.compile(r"/admin/login/"))


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
        # The page may reconnect on its own and hide the button meanwhile.
        try:
            retry.click(timeout=2000)
        except PlaywrightTimeout:
            pass
    expect(indicator).to_have_attribute("data-state", "connected", timeout=15000)
    expect(page.locator(f"#tasks tr[data-id='{task['id']}'] .bar b")).to_have_text("77%")
    expect(page.locator(f"#tasks tr[data-id='{task['id']}']")).to_contain_text("two")


def wait_until_offline(page) -> None:
    """The five backoff waits (10 s at most each), then the fallback. Each failed
    try ends in real time, not in the page's clock, so run it until it falls back."""
    for _ in range(30):
        page.clock.run_for(10_000)
        if page.locator("#connection").get_attribute("data-state") == "offline":
            break
        page.wait_for_timeout(100)
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")


def run_polls_until(page, done) -> None:
    """A polling round is timed once the last one is done (every channel of
    the page polled, in real time): run the page's clock until `done()`."""
    for _ in range(10):
        page.clock.run_for(5_000)
        if done():
            return
        page.wait_for_timeout(200)


def test_pages_keep_updating_by_polling_when_websockets_are_blocked(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("no sockets here")
    task = api.create_task(session["id"], "polled")
    page = browse(live, f"/sessions/{session['id']}/", block_sockets=True)
    wait_until_offline(page)
    expect(page.locator("#connection .label")).to_have_text("offline · polling")
    expect(page.locator("#tasks")).to_contain_text("polled")
    api.update_task(task["id"], status="running", progress=64)
    bar = page.locator(f"#tasks tr[data-id='{task['id']}'] .bar b")
    run_polls_until(page, lambda: bar.inner_text() == "64%")
    expect(bar).to_have_text("64%")


def test_the_log_viewers_bar_says_offline_while_it_polls(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("no sockets for the log")
    api.log(session["id"], [{"message": "first line"}])
    page = browse(live, f"/sessions/{session['id']}/logs/", block_sockets=True)
    wait_until_offline(page)
    status = page.locator("#status")
    expect(status).to_contain_text("offline · polling for new lines")
    expect(status).not_to_contain_text(re.compile(r"· live\b"))
    api.log(session["id"], [{"message": "a polled line"}])
    run_polls_until(page, lambda: "a polled line" in page.locator("#log").inner_text())
    expect(page.locator("#log")).to_contain_text("a polled line")


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


def test_the_log_viewer_says_why_it_is_empty_and_survives_a_bad_time_in_its_url(
    live, browse, admin_token
):
    api = live.client(admin_token)
    session = api.create_session("quiet")
    base = f"{live.url}/sessions/{session['id']}/logs/"
    page = browse(live, f"/sessions/{session['id']}/logs/")
    note = page.locator("#log .log-empty")
    expect(note).to_have_text("No log lines yet. They appear here as they are written.")
    api.log(session["id"], [{"message": "first"}])
    expect(page.locator("#log")).to_contain_text("first")
    expect(note).to_be_hidden()

    page.goto(f"{base}?q=nowhere&level=ERROR")
    expect(note).to_contain_text("No lines match level ERROR and above, text “nowhere”.")
    # A matching line arrives live and replaces the note.
    api.log(session["id"], [{"message": "found nowhere", "level": "ERROR"}])
    expect(page.locator("#log")).to_contain_text("found nowhere")
    expect(note).to_be_hidden()

    for query in (
        "?since=not-a-time",
        "?until=2026-13-45T99:00",
        "?since=2026-02-01T00:00&until=2026-01-01T00:00",
    ):
        page.goto(base + query)
        expect(note).to_contain_text("This view cannot be shown")
        expect(page.locator("#filters")).to_be_visible()
    expect(note).to_contain_text("“from” is after “to”")
    assert page.errors == []


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
    # Past the burst, live batches are held back and stand as "skipped" rows. A
    # batch that a busy server finds by its head check rather than by the layer
    # comes as a gap fill, which is never cut: so count what the rows say.
    skipped = page.locator(".logrow.skipped button")
    expect(skipped.first).to_have_text(
        re.compile(r"^(50|100) lines skipped \((2|4) errors\) — load them$")
    )
    page.wait_for_timeout(1500)  # a second notice, if any, comes within a second
    for left in reversed(range(skipped.count())):
        skipped.first.click()
        expect(skipped).to_have_count(left)
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


def test_list_pages_page_past_the_first_200_and_the_login_page_names_the_product(
    live, browse, chromium
):
    from sessions_app import services
    from sessions_app.models import Session, Task

    sessions = Session.objects.bulk_create(Session(name=f"batch {n}") for n in range(230))
    Task.objects.bulk_create(Task(session=sessions[0], name=f"step {n}") for n in range(205))
    page = browse(live, "/sessions/")
    expect(page.locator("#count")).to_have_text("200 shown of 230")
    expect(page.locator("#rows tr")).to_have_count(200)
    page.get_by_role("button", name="Show 200 more").click()
    expect(page.locator("#count")).to_have_text("230 shown of 230")
    expect(page.locator("#more")).to_be_hidden()
    # A session made while the page is open is counted, not shown past the count.
    services.create_session(name="made live")
    expect(page.locator("#count")).to_have_text("231 shown of 231")
    page.goto(live.url + "/tasks/")
    expect(page.locator("#count")).to_have_text("200 shown of 205")
    page.locator("#more").click()
    expect(page.locator("#rows tr")).to_have_count(205)
    anonymous = chromium.new_page()
    anonymous.goto(live.url + "/admin/login/")
    expect(anonymous).to_have_title(re.compile("Switchboard"))
    expect(anonymous.locator("#site-name")).to_have_text("Switchboard administration")
    anonymous.close()
    assert page.errors == []


def test_everything_works_under_a_path_behind_nginx(fresh_server, browse, admin_token):
    from project.tests.test_deploy import SUBPATH_SITE, Nginx, nginx_binary

    nginx_binary()
    server = fresh_server(SWITCHBOARD_ROOT_PATH="/switchboard")
    nginx = Nginx([server.port], path=SUBPATH_SITE)
    assert nginx.check().returncode == 0, nginx.check().stderr
    nginx.start()
    try:
        outside = type("Outside", (), {"url": nginx.url})()
        api = Client(f"{nginx.url}/switchboard", admin_token)
        session = api.create_session("under a path")
        task = api.create_task(session["id"], "step")
        page = browse(outside, "/switchboard/sessions/")
        failed = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
        link = page.locator(f"#rows tr[data-id='{session['id']}'] a")
        expect(link).to_have_attribute("href", f"/switchboard/sessions/{session['id']}/")
        link.click()
        expect(page).to_have_url(f"{nginx.url}/switchboard/sessions/{session['id']}/")
        api.update_task(task["id"], status="running", progress=40, message="through nginx")
        row = page.locator(f"#tasks tr[data-id='{task['id']}']")
        expect(row.locator("[data-f=message]")).to_have_text("through nginx")
        expect(page.get_by_role("link", name="Full log")).to_have_attribute(
            "href", f"/switchboard/sessions/{session['id']}/logs/"
        )
        assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # the CSS came
        page.goto(f"{nginx.url}/switchboard/api/v1/docs")
        expect(page.locator(".swagger-ui")).to_be_visible()
        page.goto(f"{nginx.url}/switchboard/admin/")
        expect(page.locator("#site-name")).to_have_text("Switchboard administration")
        assert failed == [] and page.errors == []
        sockets = [line for line in nginx.access() if line[1] == "/switchboard/ws/"]
        assert sockets and sockets[0][2] == "101"
        # Straight to the process, the prefix may be there or not (a proxy
        # that takes it off).
        for base in (f"{server.url}/switchboard", server.url):
            assert Client(base, admin_token).request("GET", "sessions")["count"] >= 1, base
    finally:
        nginx.stop()


def test_the_admin_lists_newest_first_to_the_millisecond_within_1400_px(live, browse, admin_token):
    api = live.client(admin_token)
    api.create_session("an older session with a name long enough to push columns " * 2)
    newer = api.create_session("newer")
    for n in range(8):
        api.create_task(newer["id"], f"a task with a fairly long name, number {n}")
    api.log(newer["id"], [{"message": "the line people look for " + "x" * 90,
                           "logger": "a.very.long.logger.name.that.takes.room"}])  # fmt: skip
    page = browse(live, "/admin/sessions_app/session/")
    page.set_viewport_size({"width": 1400, "height": 900})
    rows = page.locator("#result_list tbody tr")
    expect(rows.first).to_contain_text("newer")
    note = page.locator(".switchboard-not-live")
    expect(note).to_contain_text("does not follow changes")
    expect(note.locator("a")).to_have_attribute("href", re.compile(r"/sessions/$"))
    created = rows.first.locator("td.field-created").inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", created), created
    expect(rows.first.locator("td.field-live a")).to_have_attribute(
        "href", re.compile(rf"/sessions/{newer['id']}/$")
    )
    # The change page, with its task inline, fits the window; it links to the live page.
    page.goto(f"{live.url}/admin/sessions_app/session/{newer['id']}/change/")
    expect(page.locator("#tasks-group")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    page.locator("a.viewsitelink").click()
    expect(page).to_have_url(re.compile(rf"/sessions/{newer['id']}/$"))
    # Every list's columns in view: its table scrolls neither the page nor itself.
    for path in ("sessions_app/session", "sessions_app/task", "logs_app/logentry"):
        page.goto(f"{live.url}/admin/{path}/")
        wide = page.evaluate(
            "[document.documentElement.scrollWidth,"
            " document.querySelector('#changelist .results').scrollWidth,"
            " document.querySelector('#changelist .results').clientWidth]"
        )
        assert wide[0] <= 1400 and wide[1] <= wide[2], (path, wide)
    # The log lines: newest first, the message in view.
    page.goto(f"{live.url}/admin/logs_app/logentry/")
    message = page.locator("#result_list td.field-short_message").first
    expect(message).to_contain_text("the line people look for")
    box = message.bounding_box()
    assert box is not None and box["x"] + 200 <= 1400, box
    assert page.errors == []


CONTRAST = """(bar) => {
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d");
  const rgb = (css) => { ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, 1, 1);
                         ctx.fillStyle = css; ctx.fillRect(0, 0, 1, 1); return ctx.getImageData(0, 0, 1, 1).data; };
  const lum = (c) => { const [r, g, b] = [c[0], c[1], c[2]].map((v) => { v /= 255;
                       return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                       return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(rgb(a)), lum(rgb(b))].sort((p, q) => q - p);
                            return (x + 0.05) / (y + 0.05); };
  const text = getComputedStyle(bar.querySelector("b")).color;
  return [ratio(text, getComputedStyle(bar.querySelector("span")).backgroundColor),
          ratio(text, getComputedStyle(bar).backgroundColor)];
}"""


def test_a_progress_bars_percentage_is_readable_over_its_fill(live, browse, admin_token):
    api = live.client(admin_token)
    session = api.create_session("contrast")
    for name, status in (("running", "running"), ("done", "completed"), ("broke", "failed")):
        task = api.create_task(session["id"], name)
        api.update_task(task["id"], status=status, progress=60)
    page = browse(live, f"/sessions/{session['id']}/")
    bars = page.locator("#tasks .bar")
    expect(bars).to_have_count(3)
    for index in range(3):
        over_fill, over_track = bars.nth(index).evaluate(CONTRAST)
        # WCAG AA for small text: 4.5 to 1, over the fill and the empty track alike.
        assert over_fill >= 4.5 and over_track >= 4.5, (index, over_fill, over_track)

"""A viewer's pages, in real headless Chromium: everything to see, no control
to act with; an operator's same pages have them."""

import os

import pytest
from django.apps import apps
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Group
from django.test import Client as DjangoClient
from playwright.sync_api import expect, sync_playwright

from sessions_app import services
from sessions_app.groups import OPERATORS, VIEWERS, create_groups

pytestmark = [pytest.mark.timeout(180)]

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


@pytest.fixture(scope="module")
def chromium():
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def people(django_user_model):
    create_groups(apps)  # the test database is flushed between tests, groups too
    made = {}
    for name, group in (("viewer", VIEWERS), ("operator", OPERATORS)):
        # A hash the server's own hashers read (the tests' fast one is not among them).
        password = PBKDF2PasswordHasher().encode("pw", "pagesalt", iterations=1000)
        made[name] = django_user_model.objects.create(username=name, password=password)
        made[name].groups.add(Group.objects.get(name=group))
    return made


@pytest.fixture
def work(worker_user):
    session, _ = services.create_session(name="their run", owner=worker_user, status="running")
    services.create_task(session.pk, name="busy task", status="running")
    services.create_task(session.pk, name="queued task")
    return session


def signed_in(chromium, live, user):
    web = DjangoClient()
    web.force_login(user)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies(
        [{"name": "sessionid", "value": web.cookies["sessionid"].value, "url": live.url}]
    )
    return context


def test_a_viewer_signs_in_and_sees_every_page_without_a_control(live, chromium, people, work):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Through the login page itself, as a viewer would.
    page.goto(live.url + f"/sessions/{work.pk}/")
    page.fill("#id_username", "viewer")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    expect(page).to_have_url(live.url + f"/sessions/{work.pk}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#tasks")).to_contain_text("busy task")
    expect(page.locator("#tasks")).to_contain_text("queued task")
    expect(page.locator("#tasks button")).to_have_count(0)
    expect(page.locator("#cancel-session")).to_have_count(0)
    expect(page.locator("header nav")).not_to_contain_text("Admin")

    page.goto(live.url + "/tasks/")
    expect(page.locator("#rows")).to_contain_text("busy task")
    expect(page.locator("#rows button")).to_have_count(0)

    page.goto(live.url + "/")
    expect(page.locator("#running")).to_contain_text("their run")
    expect(page.locator("main button")).to_have_count(0)

    page.goto(live.url + f"/sessions/{work.pk}/logs/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("main .danger")).to_have_count(0)
    assert errors == []
    context.close()


def test_an_operator_gets_the_controls_on_the_same_pages(live, chromium, people, work):
    context = signed_in(chromium, live, people["operator"])
    page = context.new_page()
    page.goto(live.url + f"/sessions/{work.pk}/")
    expect(page.locator("#tasks button", has_text="Cancel")).to_have_count(2)
    expect(page.locator("#cancel-session")).to_be_visible()
    page.goto(live.url + "/tasks/")
    expect(page.locator("#rows button", has_text="Cancel")).to_have_count(2)
    page.locator("#rows tr", has_text="queued task").locator("button").click()
    expect(page.locator("#rows tr", has_text="queued task")).to_contain_text("cancelled")
    context.close()

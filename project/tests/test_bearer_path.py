"""A bearer-token API request takes the short way through the middleware: no
session, no CSRF, no messages; everything else keeps them."""

import pytest
from django.test import AsyncClient, Client

CSRF = "a" * 32
BEARER = {"Authorization": "Bearer sb_anything"}

everything = {"session": True, "messages": True, "csrf": True, "user": True}
nothing = {"session": False, "messages": False, "csrf": False, "user": False}


@pytest.fixture(autouse=True)
def probe_urls(settings):
    settings.ROOT_URLCONF = "project.tests.probe_urls"


def cookies(client) -> None:
    client.cookies["csrftoken"] = CSRF
    client.cookies["sessionid"] = "not-a-session"


@pytest.mark.parametrize(
    "path, headers, given",
    [
        ("/api/probe", BEARER, nothing),
        ("/api/probe", {}, everything),
        ("/api/probe", {"Authorization": "Basic eDp5"}, everything),
        ("/probe", BEARER, everything),
    ],
)
async def test_only_a_bearer_api_request_skips_session_csrf_and_messages(path, headers, given):
    client = AsyncClient()  # the ASGI handler, as under daphne
    cookies(client)
    response = await client.post(path, headers=headers)
    assert response.json() == given
    assert "Cookie" not in response.get("Vary", "")
    assert not response.cookies


def test_the_sync_handler_takes_the_same_short_way():
    client = Client()
    cookies(client)
    assert Client().post("/api/probe", headers=BEARER).json() == nothing
    assert client.post("/api/probe").json() == everything

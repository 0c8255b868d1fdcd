"""Request rates per token and per address on a real daphne: 429 with
Retry-After, and the client waiting it out."""

import json
import urllib.error
import urllib.request

import pytest
from switchboard_client import Client, SwitchboardError

from conftest import make_token

pytestmark = pytest.mark.timeout(120)


def call(server, token: str, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.url}/api/v1/{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


def test_a_token_past_its_rate_gets_429_with_retry_after_and_others_do_not(
    fresh_server, admin_user, worker_user
):
    server = fresh_server(
        SWITCHBOARD_TOKEN_RATE="0.5", SWITCHBOARD_TOKEN_BURST="4", SWITCHBOARD_ADDRESS_RATE="0"
    )
    runaway, calm = make_token(admin_user), make_token(worker_user)
    status, _, session = call(server, runaway, "POST", "sessions", {"name": "busy"})
    assert status == 201
    # A log batch is one request, however many lines it carries.
    lines = {"entries": [{"message": f"line {n}"} for n in range(500)]}
    answers = [
        call(server, runaway, "POST", f"sessions/{session['id']}/logs", lines) for _ in range(3)
    ]
    assert [a[0] for a in answers] == [201, 201, 201]
    status, headers, body = call(server, runaway, "GET", "sessions")
    assert status == 429
    assert body == {"detail": "Too many requests."}
    assert int(headers["Retry-After"]) >= 1
    # Another token from the same address is not held back.
    assert call(server, calm, "GET", "sessions")[0] == 200


def test_an_address_past_its_rate_gets_429_whatever_its_tokens(fresh_server, admin_user):
    server = fresh_server(
        SWITCHBOARD_TOKEN_RATE="0", SWITCHBOARD_ADDRESS_RATE="0.5", SWITCHBOARD_ADDRESS_BURST="4"
    )
    # One of the burst went to the fixture's start-up probe (/api/v1/openapi.json).
    tokens = [make_token(admin_user) for _ in range(4)]
    statuses = [call(server, token, "GET", "sessions")[0] for token in tokens]
    assert statuses == [200, 200, 200, 429]


def test_bad_tokens_drain_the_address_limit_before_authentication(fresh_server, admin_user):
    server = fresh_server(
        SWITCHBOARD_TOKEN_RATE="0", SWITCHBOARD_ADDRESS_RATE="0.5", SWITCHBOARD_ADDRESS_BURST="6"
    )
    answers = [call(server, f"sb_guess{n}", "GET", "sessions") for n in range(8)]
    assert [a[0] for a in answers] == [401] * 5 + [429] * 3
    status, headers, body = answers[-1]
    assert body == {"detail": "Too many requests."} and int(headers["Retry-After"]) >= 1
    # A good token from the drained address waits too.
    assert call(server, make_token(admin_user), "GET", "sessions")[0] == 429


def test_the_client_waits_out_429s_or_says_when_to_come_back(fresh_server, admin_user):
    server = fresh_server(
        SWITCHBOARD_TOKEN_RATE="4", SWITCHBOARD_TOKEN_BURST="2", SWITCHBOARD_ADDRESS_RATE="0"
    )
    token = make_token(admin_user)
    patient = Client(server.url, token, throttle_wait=20)
    session = patient.create_session("patient")
    task = patient.create_task(session["id"], "steps")
    for n in range(1, 11):
        patient.progress(task["id"], n * 10)
    assert patient.get_task(task["id"])["progress"] == 100
    hasty = Client(server.url, token, throttle_wait=0)
    with pytest.raises(SwitchboardError) as refused:
        for _ in range(10):
            hasty.get_task(task["id"])
    assert refused.value.status == 429 and refused.value.retry_after >= 1

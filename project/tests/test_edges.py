"""The edges of the HTTP contract: every answer under /api/v1/ is JSON, a write
without identity is 401, and a body past the limit is refused before it is
held (against real daphne, with raw sockets)."""

import json
import socket
import time

import pytest
from django.test import Client, override_settings

from conftest import rss_mib

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_write_without_identity_is_401_not_a_csrf_failure():
    browser = Client(enforce_csrf_checks=True)
    response = browser.post("/api/v1/sessions", {"name": "n"}, content_type="application/json")
    assert response.status_code == 401 and response.json()["detail"]


def test_odd_paths_and_methods_under_the_api_answer_json():
    http = Client()
    for method, path, status in (
        ("get", "/api/v1/sessions/abc", 404),
        ("get", "/api/v1/no-such-thing", 404),
        ("get", "/api/v1/tasks/1.5/", 404),
        ("delete", "/api/v1/sessions", 405),
    ):
        response = getattr(http, method)(path)
        assert response.status_code == status, (path, response.status_code)
        assert response["Content-Type"] == "application/json", path
        assert response.json()["detail"], path
    assert "GET" in http.delete("/api/v1/sessions")["Allow"]
    # Pages keep their HTML.
    assert http.get("/no-such-page/")["Content-Type"].startswith("text/html")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
def test_a_body_past_the_limit_is_a_json_413(worker_token):
    body = json.dumps({"name": "x" * 4096})
    response = Client().post(
        "/api/v1/sessions",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {worker_token}"},
    )
    assert response.status_code == 413 and "limit is 2048 bytes" in response.json()["detail"]


def exchange(port: int, head: bytes, body_chunks=(), timeout: float = 10.0) -> bytes:
    """Send a request's head and some body, then read the answer until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server may close while the body is still coming
        answer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
        return answer


def test_daphne_refuses_a_huge_body_on_its_headers_and_a_long_chunked_one_as_it_comes(
    fresh_server, worker_token
):
    srv = fresh_server(SWITCHBOARD_MAX_BODY_BYTES="65536")
    before = rss_mib(srv.process.pid)
    auth = f"Authorization: Bearer {worker_token}\r\n".encode()

    # 800 MB announced, nothing sent: the answer comes on the headers alone.
    started = time.monotonic()
    answer = exchange(
        srv.port,
        b"POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
        + b"Content-Type: application/json\r\nContent-Length: 800000000\r\n\r\n",
    )  # fmt: skip
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower()
    assert json.loads(body)["detail"] == "request body too large: the limit is 65536 bytes"

    # A chunked body with no length: refused once past the limit, the rest unread.
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"a" * (1 << 20))
    answer = exchange(
        srv.port,
        b"POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        [chunk] * 64,
    )  # fmt: skip
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Pages are guarded the same way.
    answer = exchange(
        srv.port,
        b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert rss_mib(srv.process.pid) - before < 16

    # The server still serves bodies under the limit.
    client = srv.client(worker_token)
    created = client.create_session("after")
    assert created["name"] == "after"
    assert "Traceback" not in srv.logs()


def test_a_socket_origin_may_name_the_forwarded_host_only_when_that_is_trusted(settings):
    from live.auth import origin_allowed

    settings.ALLOWED_HOSTS = ["127.0.0.1", "ops.example.com"]
    headers = [
        (b"host", b"127.0.0.1:8001"),
        (b"origin", b"https://ops.example.com"),
        (b"x-forwarded-host", b"ops.example.com, proxy.internal"),
    ]
    settings.USE_X_FORWARDED_HOST = False
    assert origin_allowed(headers, required=True, scheme="https") is False
    settings.USE_X_FORWARDED_HOST = True
    assert origin_allowed(headers, required=True, scheme="https") is True
    # The same host over the other scheme is another origin.
    assert origin_allowed(headers, required=True, scheme="http") is False
    forged = [(b"host", b"127.0.0.1:8001"), (b"origin", b"https://evil.example")]
    assert origin_allowed(forged + headers[2:], required=True, scheme="https") is False


def test_the_page_scheme_comes_from_the_trusted_proxy_header_only(settings):
    from live.auth import request_scheme

    forwarded = {"headers": [(b"x-forwarded-proto", b"https")]}
    settings.SECURE_PROXY_SSL_HEADER = None
    assert request_scheme(forwarded) == "http"
    assert request_scheme({"scheme": "wss", "headers": []}) == "https"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert request_scheme(forwarded) == "https"
    assert request_scheme({"headers": []}) == "http"

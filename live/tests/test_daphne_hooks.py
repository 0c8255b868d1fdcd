"""The hooks into daphne's internals take on the installed daphne, and a
daphne they would not take on refuses to start instead of running without
them (no body limit, no compression, no bound on a slow reader)."""

import functools

import pytest
from daphne import http_protocol, server, ws_protocol
from django.core.exceptions import ImproperlyConfigured
from twisted.web import http as twisted_http

from live import daphne_hooks
from project import bodylimit
from project.deflate import accept_deflate


def install(compression: bool = True) -> None:
    daphne_hooks.install(
        limit=bodylimit.limit,
        answer=bodylimit.answer,
        compression=compression,
        accept=accept_deflate,
    )


def test_every_hook_takes_on_the_installed_daphne():
    assert daphne_hooks.problems(compression=True) == []
    install()
    protocol = http_protocol.HTTPFactory(server=None).buildProtocol(("127.0.0.1", 1))
    assert protocol.requestFactory.switchboard_limited is True
    assert server.Server.kill_all_applications.switchboard_drains is True
    built = server.HTTPFactory(server=None).buildProtocol(("127.0.0.1", 1))
    # The drain reaches each HTTP connection's channel, and its requests.
    assert built._channel.requestFactory is http_protocol.WebRequest
    factory = server.WebSocketFactory(None, server="test")
    factory.setProtocolOptions()
    assert factory.perMessageCompressionAccept is accept_deflate
    # What Server.create_application passes as `send`: partial(self.handle_reply, protocol).
    daphne_server = server.Server.__new__(server.Server)
    protocol = FakeProtocol()
    assert daphne_hooks.find_protocol(functools.partial(daphne_server.handle_reply, protocol)) is (
        protocol
    )


class FakeProtocol:
    transport = object()

    def registerProducer(self, producer, streaming):  # noqa: N802 - Twisted's name
        pass


def test_a_send_that_is_not_daphnes_has_no_protocol_behind_it():
    assert daphne_hooks.find_protocol(lambda message: None) is None
    assert daphne_hooks.find_protocol(functools.partial(print, FakeProtocol())) is None


@pytest.mark.parametrize(
    "target, name, replacement, words",
    [
        (http_protocol.HTTPFactory, "buildProtocol", lambda self, addr: None, "requestFactory"),
        (server.Server, "create_application", lambda self, protocol, path: None, "partial"),
        (server.Server, "run", lambda self: None, "WebSocketFactory"),
        (ws_protocol.WebSocketProtocol, "registerProducer", None, "registerProducer"),
        (server.Server, "run", lambda self: None, "kill_all_applications"),
        (ws_protocol.WebSocketProtocol, "sendCloseFrame", None, "sendCloseFrame"),
        # What the drain reads of each HTTP connection.
        (twisted_http._GenericHTTPChannelProtocol, "factory", None, "_channel"),
        (twisted_http.HTTPChannel, "__init__", lambda self: None, "requests"),
        (http_protocol.WebRequest, "__init__", lambda self, *args: None, "_response_started"),
    ],
)
def test_a_daphne_that_changed_refuses_to_start_and_fails_the_deploy_check(
    monkeypatch, settings, target, name, replacement, words
):
    monkeypatch.setattr(target, name, replacement)
    with pytest.raises(ImproperlyConfigured) as refused:
        install()
    assert words in str(refused.value) and daphne_hooks.version() in str(refused.value)
    settings.SWITCHBOARD = {**settings.SWITCHBOARD, "WS_COMPRESSION": True}
    errors = daphne_hooks.check()
    assert errors and {error.id for error in errors} == {"switchboard.E001"}
    assert any(words in error.msg for error in errors)


@pytest.mark.timeout(60)
async def test_a_server_with_compression_on_accepts_a_deflate_offer(fresh_server, admin_token):
    from live.tests import wsclient as wc

    for setting, offered in (("on", True), ("off", False)):
        srv = fresh_server(SWITCHBOARD_WS_COMPRESSION=setting)
        async with await wc.connect(srv.ws_url, admin_token) as ws:
            accepted = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ("permessage-deflate" in accepted) is offered, (setting, accepted)
            await wc.send(ws, {"action": "ping", "id": 1})
            assert (await wc.recv(ws))["type"] == "pong"

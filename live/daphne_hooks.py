"""Every place Switchboard reaches into daphne's internals, in one module.

daphne has no supported way to do four things the product needs, so each is
a hook into its internals:

1. **Body limit** (`limit_bodies`): daphne reads a whole request body into
   memory before the application is called. Its request class
   (`daphne.http_protocol.WebRequest`, which `HTTPFactory.buildProtocol`
   looks up when it builds each connection) is replaced by one that answers
   413 as soon as the headers announce too much, or too much has arrived.
2. **Compression** (`offer_compression`): daphne builds autobahn's socket
   factory (`daphne.server.WebSocketFactory`, looked up in `Server.run`)
   with no compression option; the replacement accepts a client's
   permessage-deflate offer.
3. **Backpressure** (`find_protocol`): daphne hands the application
   `send=functools.partial(Server.handle_reply, protocol)`; the protocol
   behind it is autobahn's, which takes a Twisted push producer
   (`registerProducer`) and pauses it when the socket's buffer is full
   (live.flow).
4. **Drain** (`drain_on_shutdown`): on SIGTERM daphne's before-shutdown
   trigger (`Server.kill_all_applications`, added in `Server.run`) cancels
   every application at once, cutting requests in flight. It is replaced by
   one that first drains (`Drain`): stop listening (the ports, which
   `Server.listen_success` is handed), close idle HTTP connections (tracked
   by the `HTTPFactory` daphne builds in `Server.run`), answer the rest with
   `Connection: close`, close sockets with 1012, wait for the requests in
   flight, at most SWITCHBOARD_DRAIN_SECONDS; then daphne's own.

Each hook states what it expects of daphne (`problems()`); `install()`, when
the ASGI application is loaded, applies them and refuses to start
(ImproperlyConfigured, naming the daphne version) when one would not take, so
that none of them can turn off without a word. `manage.py check --deploy`
reports the same.
"""

import functools
import logging
import weakref
from collections.abc import Callable

from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured

try:
    import daphne
    from daphne import http_protocol, server, ws_protocol
    from twisted.internet import defer, reactor
    from twisted.web import http as twisted_http
except ImportError:  # pragma: no cover - daphne is a requirement
    daphne = None

logger = logging.getLogger(__name__)


def version() -> str:
    return getattr(daphne, "__version__", "not installed")


def _uses(function, *names: str) -> bool:
    """Whether a function's code looks up these globals or attributes (the
    seam a hook replaces), as in the daphne version this was written for."""
    code = getattr(function, "__code__", None)
    return code is not None and all(name in code.co_names for name in names)


def problems(compression: bool = False) -> list[str]:
    """What this daphne lacks of what the hooks expect (empty: all can take)."""
    if daphne is None:
        return ["daphne is not installed"]
    found = []
    request = http_protocol.WebRequest
    if not _uses(http_protocol.HTTPFactory.buildProtocol, "WebRequest", "requestFactory"):
        found.append("HTTPFactory.buildProtocol no longer sets requestFactory = WebRequest")
    for method in ("gotLength", "handleContentChunk", "process"):
        if not callable(getattr(request, method, None)):
            found.append(f"WebRequest has no {method}()")
    if compression and not _uses(server.Server.run, "WebSocketFactory", "setProtocolOptions"):
        found.append("Server.run no longer builds WebSocketFactory with setProtocolOptions")
    if not _uses(server.Server.create_application, "partial", "handle_reply"):
        found.append("Server.create_application no longer sends through partial(handle_reply)")
    if not callable(getattr(ws_protocol.WebSocketProtocol, "registerProducer", None)):
        found.append("the WebSocket protocol takes no registerProducer()")
    if not _uses(server.Server.run, "addSystemEventTrigger", "kill_all_applications"):
        found.append("Server.run no longer adds kill_all_applications before shutdown")
    if not _uses(server.Server.run, "HTTPFactory", "listen_success"):
        found.append("Server.run no longer listens with HTTPFactory and listen_success")
    if not callable(getattr(ws_protocol.WebSocketProtocol, "sendCloseFrame", None)):
        found.append("the WebSocket protocol has no sendCloseFrame()")
    found.extend(_drain_problems())
    return found


def _drain_problems() -> list[str]:
    """What `drain` reads of Twisted's and daphne's connection state."""
    found = []
    wrapper = getattr(twisted_http, "_GenericHTTPChannelProtocol", None)
    factory = getattr(wrapper, "factory", None)
    if not isinstance(factory, property) or not _uses(factory.fget, "_channel"):
        found.append("Twisted's HTTPFactory no longer wraps each HTTPChannel as _channel")
    channel = twisted_http.HTTPChannel
    if not (_uses(channel.__init__, "requests") and hasattr(channel, "persistent")):
        found.append("HTTPChannel no longer keeps requests and persistent")
    if not _uses(http_protocol.WebRequest.__init__, "_response_started"):
        found.append("daphne's WebRequest no longer keeps _response_started")
    return found


def install(
    *,
    limit: Callable[[], int],
    answer: Callable[[], bytes],
    compression: bool,
    accept: Callable | None = None,
    drain_seconds: Callable[[], float] = lambda: 0,
) -> None:
    """Apply the hooks (idempotent); ImproperlyConfigured if one would not take."""
    found = problems(compression)
    if not found:
        limit_bodies(limit, answer)
        if compression:
            offer_compression(accept)
        drain_on_shutdown(drain_seconds)
        if not getattr(http_protocol.WebRequest, "switchboard_limited", False):
            found.append("the body limit did not take")
        if not getattr(server.Server.kill_all_applications, "switchboard_drains", False):
            found.append("the drain did not take")
        if compression and not getattr(server.WebSocketFactory, "switchboard_deflate", False):
            found.append("compression did not take")
    if found:
        raise ImproperlyConfigured(
            f"daphne {version()} does not match what Switchboard hooks into "
            f"(live/daphne_hooks.py): {'; '.join(found)}. Install the daphne "
            "version pinned in requirements/base.txt."
        )


def check(app_configs=None, **kwargs) -> list[Error]:
    """`manage.py check --deploy`: the hooks would take on this daphne."""
    from django.conf import settings

    compression = settings.SWITCHBOARD["WS_COMPRESSION"]
    return [
        Error(f"daphne {version()}: {problem}", hint="install the pinned daphne",
              id="switchboard.E001")
        for problem in problems(compression)
    ]  # fmt: skip


# --- 1. the body limit ----------------------------------------------------------------

STATUS, REASON = 413, b"Content Too Large"


def limit_bodies(limit: Callable[[], int], answer: Callable[[], bytes]) -> None:
    """daphne's requests refuse large bodies as they arrive (idempotent)."""
    if getattr(http_protocol.WebRequest, "switchboard_limited", False):
        return

    class LimitedRequest(http_protocol.WebRequest):
        switchboard_limited = True
        refused = False
        received = 0

        def gotLength(self, length):
            if length is not None and length > limit():
                # No "100 Continue" for a body that will not be read.
                self.requestHeaders.removeHeader(b"Expect")
                self.refuse()
            super().gotLength(None if self.refused else length)

        def handleContentChunk(self, data):
            if self.refused:
                return
            self.received += len(data)
            if self.received > limit():
                self.refuse()
                return
            super().handleContentChunk(data)

        def process(self):
            if not self.refused:
                return super().process()

        def refuse(self):
            if self.refused:
                return
            self.refused = True
            body = answer()
            head = (
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n"
            ) % (STATUS, REASON, len(body))
            channel = self.channel
            channel.persistent = False
            channel.transport.write(head + body)
            channel.transport.loseConnection()

    http_protocol.WebRequest = LimitedRequest


# --- 2. compression ---------------------------------------------------------------------


def offer_compression(accept: Callable | None) -> None:
    """daphne's socket factory accepts deflate offers with `accept` (idempotent)."""
    if getattr(server.WebSocketFactory, "switchboard_deflate", False):
        return

    class DeflatingFactory(server.WebSocketFactory):
        switchboard_deflate = True

        def setProtocolOptions(self, **options):
            options.setdefault("perMessageCompressionAccept", accept)
            super().setProtocolOptions(**options)

    server.WebSocketFactory = DeflatingFactory


# --- 3. the protocol behind `send` ---------------------------------------------------------


def find_protocol(send):
    """daphne's protocol object behind an ASGI `send` callable, or None."""
    if isinstance(send, functools.partial) and getattr(send.func, "__name__", "") == (
        "handle_reply"
    ):
        protocol = send.args[0] if send.args else None
        if hasattr(protocol, "registerProducer") and hasattr(protocol, "transport"):
            return protocol
    return None


# --- 4. the drain on SIGTERM -------------------------------------------------------------


class Drain:
    """The state of this process's drain: `/readyz` asks `active`."""

    active = False


def draining() -> bool:
    return Drain.active


def drain_on_shutdown(seconds: Callable[[], float]) -> None:
    """daphne drains before it kills its applications at shutdown (idempotent)."""
    if getattr(server.Server.kill_all_applications, "switchboard_drains", False):
        return
    kill_all = server.Server.kill_all_applications
    listen_success = server.Server.listen_success

    def remember_port(self, port):
        self.switchboard_ports = [*getattr(self, "switchboard_ports", []), port]
        return listen_success(self, port)

    def kill_all_applications(self):
        limit = seconds()
        if limit <= 0:
            return kill_all(self)
        try:
            done = drain(self, limit)
        except Exception:
            logger.exception("the drain failed; stopping at once")
            return kill_all(self)
        done.addErrback(lambda failure: logger.error("the drain failed: %s", failure))
        done.addBoth(lambda _: kill_all(self))
        return done

    kill_all_applications.switchboard_drains = True
    server.Server.listen_success = remember_port
    server.Server.kill_all_applications = kill_all_applications

    class TrackingFactory(server.HTTPFactory):
        """Keeps the HTTP connections it builds, idle ones included (daphne
        tracks only requests), so that a drain can close the idle ones."""

        def buildProtocol(self, addr):
            protocol = super().buildProtocol(addr)
            if protocol is not None:
                self.switchboard_channels = getattr(self, "switchboard_channels", weakref.WeakSet())
                self.switchboard_channels.add(protocol)
            return protocol

    class DrainingRequest(http_protocol.WebRequest):
        def handle_reply(self, message):
            starts = message.get("type") == "http.response.start" and not self._response_started
            super().handle_reply(message)
            if starts and Drain.active and self.channel is not None:
                self.channel.persistent = False
                self.responseHeaders.setRawHeaders(b"Connection", [b"close"])

    server.HTTPFactory = TrackingFactory
    http_protocol.WebRequest = DrainingRequest


# Seconds a kept-alive HTTP connection must have been idle before a drain closes
# it. nginx reuses its most recently used connection first, so one idle this
# long is unlikely to be taken at the moment it closes; one in use is answered
# with `Connection: close` instead, and nginx does not reuse it.
QUIET = 0.5


def drain(daphne_server, limit: float) -> defer.Deferred:
    """Stop listening, close sockets (1012) and idle HTTP connections, let what
    is in flight finish; fires when nothing is left or after `limit` seconds."""
    Drain.active = True
    deadline = reactor.seconds() + limit
    for port in getattr(daphne_server, "switchboard_ports", []):
        port.stopListening()
    # 1012, service restart: clients reconnect to another process and resume.
    for protocol in list(daphne_server.connections):
        # Not serverClose: autobahn's sendClose refuses 1012 (it allows 1000
        # and 3000-4999); daphne sends 1011 the same way.
        is_socket = isinstance(protocol, ws_protocol.WebSocketProtocol)
        if is_socket and protocol.state == protocol.STATE_OPEN:
            protocol.sendCloseFrame(code=1012)
    factory = getattr(daphne_server, "http_factory", None)
    idle_since: dict = {}

    def open_channels():
        for built in list(getattr(factory, "switchboard_channels", ())):
            # Twisted's HTTPFactory wraps each HTTPChannel (to choose HTTP/2 or 1.1).
            channel = getattr(built, "_channel", built)
            transport = getattr(channel, "transport", None)
            # A connection upgraded to a socket is the socket's now (closed above).
            if transport is None or getattr(transport, "protocol", built) is not built:
                continue
            if getattr(transport, "connected", False) and not transport.disconnecting:
                yield channel, transport

    def close_idle(now: float) -> bool:
        """Mark connections in use to close after their answer, close those
        idle for QUIET seconds; whether any HTTP connection is left."""
        left = False
        for channel, transport in open_channels():
            left = True
            if channel.requests:
                idle_since.pop(channel, None)
                channel.persistent = False
                for request in channel.requests:
                    if not request._response_started:
                        request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            elif now - idle_since.setdefault(channel, now) >= QUIET:
                transport.loseConnection()
        return left

    def sockets_left() -> bool:
        return any(
            isinstance(protocol, ws_protocol.WebSocketProtocol) and "disconnected" not in details
            for protocol, details in list(daphne_server.connections.items())
        )

    done = defer.Deferred()

    def poll():
        now = reactor.seconds()
        left = close_idle(now)
        if not (left or sockets_left()) or now >= deadline:
            done.callback(None)
        else:
            reactor.callLater(0.05, poll)

    poll()
    return done

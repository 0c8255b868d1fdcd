"""What the server holds for one socket, bounded.

ASGI gives an application no way to know whether a client reads: daphne's
`send()` returns at once and Twisted buffers whatever the client has not
taken, without a bound (PITFALLS.md). Twisted itself does know: a transport
asks a registered push producer to pause when its write buffer passes
`bufferSize`, and to resume when the buffer has drained (autobahn exposes
this as `WebSocketProtocol.registerProducer`).

So the outermost ASGI application (project/asgi.py) finds daphne's protocol
behind the `send` callable and offers it to the consumer as a `Flow`. The
consumer stops sending to a paused socket (nothing more is buffered for it)
and, once it has drained, resumes it from its cursors out of the database,
as a reconnecting client would. Under a server other than daphne, or if the
protocol cannot be found, `Flow` is absent and sends are not bounded.
"""

import logging
from collections.abc import Callable

from zope.interface import implementer

try:
    from twisted.internet.interfaces import IPushProducer
except ImportError:  # pragma: no cover - twisted comes with daphne
    IPushProducer = None

from live.daphne_hooks import find_protocol

log = logging.getLogger("switchboard.flow")

EXTENSION = "switchboard.flow"


@implementer(IPushProducer)
class Flow:
    """Pause and resume notices from one socket's transport."""

    def __init__(self, protocol, limit: int) -> None:
        self.protocol = protocol
        self.limit = limit
        self.paused = False
        self.pauses = 0
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None
        self.attached = False

    def attach(self, on_pause: Callable[[], None], on_resume: Callable[[], None]) -> bool:
        """Start watching; False if the transport does not allow it."""
        transport = getattr(self.protocol, "transport", None)
        if transport is None:
            return False
        self.on_pause, self.on_resume = on_pause, on_resume
        try:
            if getattr(transport, "producer", None) is not None:
                # daphne's HTTP channel, left from the upgrade request: on a full
                # buffer it would stop reading the client (and, as the upgrade
                # request never ends, not start again). The socket is ours now.
                transport.unregisterProducer()
            transport.bufferSize = self.limit
            self.protocol.registerProducer(self, True)
        except Exception as error:  # a transport that takes no producer
            log.warning("cannot bound this socket's buffer: %s", error)
            return False
        self.attached = True
        return True

    def buffered(self) -> int:
        """Bytes written to the socket that the client has not taken yet (best effort)."""
        transport = getattr(self.protocol, "transport", None)
        try:
            data = len(transport.dataBuffer) - transport.offset
            return data + transport._tempDataLen
        except (AttributeError, TypeError):
            return 0

    # IPushProducer: Twisted calls these on the server's loop.

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self.pauses += 1
            if self.on_pause:
                self.on_pause()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            if self.on_resume:
                self.on_resume()

    def stopProducing(self) -> None:
        self.paused = True
        self.on_pause = self.on_resume = None


class FlowApp:
    """ASGI wrapper that offers each WebSocket connection its `Flow`."""

    def __init__(self, inner, limit: Callable[[], int]) -> None:
        self.inner = inner
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            protocol = find_protocol(send)
            if protocol is not None:
                extensions = dict(scope.get("extensions") or {})
                extensions[EXTENSION] = Flow(protocol, self.limit())
                scope = dict(scope, extensions=extensions)
        return await self.inner(scope, receive, send)

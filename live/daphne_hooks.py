"""Every place Switchboard reaches into daphne's internals, in one module.

daphne has no supported way to do three things the product needs, so each is
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

Each hook states what it expects of daphne (`problems()`); `install()`, when
the ASGI application is loaded, applies them and refuses to start
(ImproperlyConfigured, naming the daphne version) when one would not take, so
that none of them can turn off without a word. `manage.py check --deploy`
reports the same.
"""

import functools
from collections.abc import Callable

from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured

try:
    import daphne
    from daphne import http_protocol, server, ws_protocol
except ImportError:  # pragma: no cover - daphne is a requirement
    daphne = None


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
    return found


def install(
    *,
    limit: Callable[[], int],
    answer: Callable[[], bytes],
    compression: bool,
    accept: Callable | None = None,
) -> None:
    """Apply the hooks (idempotent); ImproperlyConfigured if one would not take."""
    found = problems(compression)
    if not found:
        limit_bodies(limit, answer)
        if compression:
            offer_compression(accept)
        if not getattr(http_protocol.WebRequest, "switchboard_limited", False):
            found.append("the body limit did not take")
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

"""permessage-deflate (RFC 7692) on daphne's sockets, when
SWITCHBOARD_WS_COMPRESSION is on.

daphne builds autobahn's WebSocketServerFactory and sets its options in
Server.run() without a compression hook; autobahn itself speaks
permessage-deflate. live.daphne_hooks gives daphne a factory whose
options accept a client's deflate offer with `accept_deflate`. The server
compresses each message on its own (no context kept between messages, a
4 KiB window and a small memory level):
a socket's compressor holds about 32 KiB instead of zlib's default 384 KiB,
and the ratio on log batches stays close (each batch repeats its own keys,
near each other). A client decompresses with any window up to its own, so
nothing of this needs announcing. See docs/PERFORMANCE.md for what it costs
and saves.
"""

WINDOW_BITS = 12
MEM_LEVEL = 5
LEVEL = 6  # autobahn's: zlib's default


def accept_deflate(offers):
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(
                offer, no_context_takeover=True, window_bits=WINDOW_BITS, mem_level=MEM_LEVEL
            )
    return None

"""The baseline of bench/fanout.py: a bare ASGI app that relays each POST to
every open WebSocket. No framework, no database, no channel layer: the least
a live broadcast can do on the same daphne.

    daphne bench.bare:application
"""

sockets: set = set()


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        sockets.add(send)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            sockets.discard(send)
    elif scope["type"] == "http":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        text = body.decode()
        for socket in list(sockets):
            await socket({"type": "websocket.send", "text": text})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b'{"ok":true}'})

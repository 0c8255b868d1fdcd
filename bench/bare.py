"""The baseline of bench/fanout.py: a bare ASGI app that relays each POST to
every open WebSocket. No framework, no database, no channel layer: the least
a live broadcast can do on the same daphne.

    daphne bench.bare:application

A socket opened at /replay/<n>/ is the baseline of bench/resume.py instead:
after its first frame it is sent n stored-looking frames from memory, the
least a resume can do.
"""

import json

sockets: set = set()


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        if scope["path"].startswith("/replay/"):
            await receive()  # the subscribe
            count = int(scope["path"].split("/")[2])
            for seq in range(1, count + 1):
                await send({"type": "websocket.send", "text": replay_frame(seq)})
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


def replay_frame(seq: int) -> str:
    return json.dumps(
        {"type": "event", "channel": "session:1", "event": "task.output", "seq": seq,
         "ts": "2026-11-23T10:00:00.000000+00:00",
         "data": {"task_id": "1", "status": "tool_calling", "message": f"step {seq - 1}",
                  "data": {"tool": "search", "q": "tide tables"}}}
    )  # fmt: skip

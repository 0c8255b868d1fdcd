"""A small real WebSocket client for end-to-end tests (the `websockets` library)."""

import asyncio
import json

import websockets


async def connect(url: str, token: str | None = None, origin: str | None = None, cookie=None):
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if cookie is not None:
        headers["Cookie"] = cookie
    return await websockets.connect(
        url, additional_headers=headers, origin=origin, max_size=None, open_timeout=10
    )


async def send(ws, frame) -> None:
    await ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))


async def recv(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, predicate, timeout: float = 10.0) -> tuple[dict, list[dict]]:
    """Read frames until one matches; returns it and everything read before it."""
    seen = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        frame = await recv(ws, max(0.01, end - loop.time()))
        if predicate(frame):
            return frame, seen
        seen.append(frame)


async def subscribe(ws, channel: str, **fields) -> dict:
    await send(ws, {"action": "subscribe", "channel": channel, "id": channel, **fields})
    reply, _ = await recv_until(ws, lambda f: f.get("id") == channel)
    assert reply["type"] == "subscribed", reply
    return reply


async def drain(ws, quiet: float = 0.5) -> list[dict]:
    """Every frame that arrives until the socket has been quiet for `quiet` seconds."""
    frames = []
    while True:
        try:
            frames.append(await recv(ws, quiet))
        except TimeoutError:
            return frames

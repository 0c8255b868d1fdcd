"""Resume with concurrent writers, against any set of server addresses: one
daphne, several, or several behind a proxy."""

import asyncio
import threading

from switchboard_client import Client

from live.tests import wsclient as wc


async def check_resume_with_concurrent_writers(
    write_urls: list[str],
    socket_urls: list[str],
    token: str,
    *,
    tasks: int = 4,
    steps: int = 25,
    subscribers: int = 1,
    drops: int = 1,
    events_per_drop: int = 30,
) -> None:
    """Writers report progress on the tasks of one session, each through the
    next of `write_urls`, while subscribers (each on the next of `socket_urls`)
    drop their socket `drops` times, every `events_per_drop` events, and
    resume with `since`, on the next address. At the end every subscriber has
    every committed event of the channel once, in order: the stored ones."""
    api = Client(write_urls[0], token, timeout=10)
    session = await asyncio.to_thread(api.create_session, "busy")
    created = [
        await asyncio.to_thread(api.create_task, session["id"], f"t{i}") for i in range(tasks)
    ]
    channel = f"session:{session['id']}"

    def write(task: dict, url: str) -> None:
        client = Client(url, token, timeout=10)
        for step in range(steps):
            client.progress(task["id"], step + 1)

    async def subscribe(n: int):
        ws = await wc.connect(socket_urls[n % len(socket_urls)], token)
        start = (await wc.subscribe(ws, channel))["seq"]
        return ws, start

    sockets = [await subscribe(n) for n in range(subscribers)]
    writers = [
        threading.Thread(target=write, args=(task, write_urls[i % len(write_urls)]))
        for i, task in enumerate(created)
    ]
    for writer in writers:
        writer.start()

    async def follow(n: int, ws, start: int) -> tuple[object, int, list[dict]]:
        got: list[dict] = []
        for drop in range(drops):
            while len(got) < events_per_drop * (drop + 1):
                frame = await wc.recv(ws)
                if frame["type"] == "event":
                    got.append(frame)
            await ws.close()  # drop the connection while the writers go on
            await asyncio.sleep(0.3)
            ws = await wc.connect(socket_urls[(n + drop + 1) % len(socket_urls)], token)
            resumed = await wc.subscribe(ws, channel, since=got[-1]["seq"])
            assert resumed["seq"] == got[-1]["seq"] and "reset" not in resumed
        return ws, start, got

    try:
        followed = await asyncio.gather(
            *(follow(n, ws, start) for n, (ws, start) in enumerate(sockets))
        )
    finally:
        await asyncio.to_thread(lambda: [w.join() for w in writers])

    async def finish(ws, start: int, got: list[dict]) -> None:
        stored = await asyncio.to_thread(api.events, channel, start, limit=5000)
        assert not stored["has_more"]
        expected = [f["seq"] for f in stored["results"]]
        await wc.send(ws, {"action": "ping"})  # lets the server check for anything unseen
        while not got or got[-1]["seq"] < expected[-1]:
            frame = await wc.recv(ws, timeout=30)
            if frame["type"] == "event" and frame["channel"] == channel:
                got.append(frame)
        # Then nothing more: a repeat would come now.
        got += [f for f in await wc.drain(ws, quiet=0.5) if f["type"] == "event"]
        await ws.close()
        assert [f["seq"] for f in got] == expected, "every committed event once, in order"
        assert sum(f["event"] == "progress.update" for f in got) == tasks * steps

    await asyncio.gather(*(finish(*one) for one in followed))

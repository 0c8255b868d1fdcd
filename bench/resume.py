"""Resume: a socket comes back after missing many events and reads them all.

    .venv/bin/python bench/resume.py [--events 10000] [--sockets 1]

One daphne on core 0 (SQLite unless DATABASE_URL names an empty database),
a `websockets` client on core 1. A task records `--events` status steps
through the batch endpoint (500 a request); each is an event on the task's
and the session's channel. Then a client subscribes to each channel with
`since` set to before them and times until the last one arrives, 5 times.

Baseline in the same run: the bare ASGI app (bench/bare.py) on the same
daphne sending as many frames of the same shape from memory on one socket.
"""

import argparse
import asyncio
import json
import os
import statistics
import time

import websockets
from benchserver import BareServer, BenchServer

SERVER_CPU, CLIENT_CPU = "0", "1"


async def read_all(url: str, subscribe: dict, count: int, headers: dict) -> float:
    """Seconds from the subscribe until the last step (`step <count - 1>`) arrived."""
    last = f"step {count - 1}"
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps(subscribe))
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "event" and frame["data"].get("message") == last:
                return time.perf_counter() - started


def timed(url: str, subscribe: dict, count: int, headers: dict, sockets: int) -> float:
    async def together() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(read_all(url, subscribe, count, headers) for _ in range(sockets)))
        return time.perf_counter() - started

    return statistics.median(asyncio.run(together()) for _ in range(5))


def main(events: int, port: int, sockets: int) -> None:
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    with BareServer(port + 10, cpus=SERVER_CPU):
        bare = timed(f"ws://127.0.0.1:{port + 10}/replay/{events}/", {"action": "subscribe"},
                     events, {}, sockets)  # fmt: skip
    with BenchServer(port, cpus=SERVER_CPU) as server:
        session = server.api("POST", "sessions", {"name": "resume"})
        task = server.api("POST", f"sessions/{session['id']}/tasks", {"name": "steps"})
        started = time.perf_counter()
        for start in range(0, events, 500):
            steps = [{"task_id": task["id"], "status": "tool_calling", "message": f"step {n}",
                      "data": {"tool": "search", "q": "tide tables"}}
                     for n in range(start, min(events, start + 500))]  # fmt: skip
            server.api("POST", f"sessions/{session['id']}/batch", {"output": steps})
        print(f"recorded {events:,} steps in {time.perf_counter() - started:.1f} s")
        headers = {"Authorization": f"Bearer {server.token}"}
        url = f"ws://127.0.0.1:{port}/ws/"
        results = {}
        for channel in (f"task:{task['id']}", f"session:{session['id']}"):
            subscribe = {"action": "subscribe", "channel": channel, "since": 0}
            results[channel.split(":")[0]] = timed(url, subscribe, events, headers, sockets)
    print(f"\n{events:,} missed events, {sockets} socket(s) at once")
    print(f"{'':22} {'time':>8} {'events/s':>10} {'ratio':>7}")
    print(f"bare app, from memory  {bare:7.3f}s {events * sockets / bare:10,.0f} {1:6.1f}x")
    for name, seconds in results.items():
        print(
            f"{name + ' channel':22} {seconds:7.3f}s {events * sockets / seconds:10,.0f}"
            f" {seconds / bare:6.1f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--sockets", type=int, default=1)
    args = parser.parse_args()
    main(args.events, args.port, args.sockets)

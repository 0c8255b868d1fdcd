"""Delivery latency of one write to many subscribers, against a bare broadcast.

    .venv/bin/python bench/fanout.py [--subscribers 200 1000] [--writes 50]
    DATABASE_URL=postgres://…/switchboard_bench REDIS_URL=redis://127.0.0.1:6379/1 \\
        .venv/bin/python bench/fanout.py --processes 2

For each subscriber count, in the same run and on the same daphne:

- baseline: bench/bare.py, a bare ASGI app that relays each POST to every
  open socket (no framework, no database, no layer);
- Switchboard: N sockets subscribed to one `task:<id>`, and a worker PATCHing
  the task's progress over HTTP (each write is stored, then fanned out).

The servers are pinned to core 0 and the Node.js clients (bench/node, the `ws`
package) to core 1, so the client's own cost is the same for both. For every
write, each socket's arrival time is taken from the moment the write was
sent; the script prints p50 / p99 of both and their ratio.
With --processes 2 (PostgreSQL + Redis), Switchboard runs two server
processes and the subscribers are split between them.

It also counts layer messages per event: sockets in every process watch
all three channels a progress.update is on (tasks, session:<id>, task:<id>),
the worker writes, and the hubs' `layer_messages` (from /api/v1/stats) over
the writes is printed: one per event and process is the design; one per
channel and process would be three.

Only 127.0.0.1 is used; the run is bounded by the counts given.
"""

import argparse
import asyncio
import json
import os
import resource
import subprocess
from pathlib import Path

import websockets
from benchserver import BareServer, BenchServer

NODE = Path(__file__).resolve().parent / "node"
SERVER_CPU, CLIENT_CPU = "0", "1"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def ensure_node_client() -> None:
    if not (NODE / "node_modules" / "ws").exists():
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=NODE, check=True
        )


def node_client(script: str, conf: dict, timeout: float = 600) -> dict:
    """Run one of bench/node's clients on the client core; its last line, parsed."""
    done = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, "node", script, json.dumps(conf)],
        cwd=NODE, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_clients(conf: dict) -> list[float]:
    return node_client("fanout-client.mjs", conf)["latencies_ms"]


def layer_messages_per_event(server, session: dict, task: dict, writes: int) -> float:
    """Layer messages the hubs took per write, every channel of the write watched."""
    channels = ["tasks", f"session:{session['id']}", f"task:{task['id']}"]
    headers = {"Authorization": f"Bearer {server.token}"}

    async def watch() -> float:
        sockets = []
        for port in server.ports:
            url = f"ws://127.0.0.1:{port}/ws/"
            ws = await websockets.connect(url, additional_headers=headers, max_size=None)
            for channel in channels:
                await ws.send(json.dumps({"action": "subscribe", "channel": channel}))
                while json.loads(await ws.recv()).get("type") != "subscribed":
                    pass
            sockets.append(ws)
        await asyncio.sleep(6)  # the processes report their figures every 5 s
        before = server.api("GET", "stats")["layer_messages"]
        for k in range(writes):
            await asyncio.to_thread(
                server.api, "PATCH", f"tasks/{task['id']}", {"progress": k % 100}
            )
        await asyncio.sleep(6)
        after = server.api("GET", "stats")["layer_messages"]
        for ws in sockets:
            await ws.close()
        return (after - before) / writes / len(server.ports)

    return asyncio.run(watch())


def main(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 16384)), hard))
    ensure_node_client()
    rows = []
    with (
        BareServer(args.port, cpus=SERVER_CPU) as bare,
        BenchServer(
            args.port + 10, processes=args.processes, cpus=SERVER_CPU,
            SWITCHBOARD_RATE_PER_SECOND="10000",
        ) as server,
    ):  # fmt: skip
        session = server.api("POST", "sessions", {"name": "bench"})
        task = server.api("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
        server.api("PATCH", f"tasks/{task['id']}", {"status": "running"})
        # A frame of the same size as Switchboard's progress.update for the baseline.
        sample = json.dumps({
            "type": "event", "channel": f"task:{task['id']}", "event": "progress.update",
            "seq": 1000, "ts": "2026-11-22T14:30:00.123456+00:00",
            "data": {"task_id": task["id"], "session_id": session["id"], "progress": "__K__",
                     "message": "", "details": {}, "completed_tasks": 0, "total_tasks": 1},
        })  # fmt: skip
        for n in args.subscribers:
            base = run_clients({
                "urls": [f"ws://127.0.0.1:{bare.port}/"], "n": n, "writes": args.writes,
                "write": {"method": "POST", "url": f"http://127.0.0.1:{bare.port}/",
                          "body": sample},
            })  # fmt: skip
            ours = run_clients({
                "urls": [f"ws://127.0.0.1:{port}/ws/" for port in server.ports],
                "n": n, "writes": args.writes, "token": server.token,
                "channel": f"task:{task['id']}",
                "write": {"method": "PATCH", "url": f"{server.base}/api/v1/tasks/{task['id']}",
                          "body": '{"progress": __K__}'},
            })  # fmt: skip
            rows.append((n, base, ours))
        per_event = layer_messages_per_event(server, session, task, args.writes)

    config = "PostgreSQL + Redis" if os.environ.get("REDIS_URL") else "SQLite + in-memory layer"
    print(f"configuration   {config}, {args.processes} Switchboard process(es)")
    print(
        f"writes          {args.writes} per run; servers on core {SERVER_CPU}, clients on core {CLIENT_CPU}"
    )
    print(f"layer messages  {per_event:.2f} per event and process (3 channels watched)")
    print("subscribers   bare p50 / p99 ms     Switchboard p50 / p99 ms     ratio p50 / p99")
    for n, base, ours in rows:
        b50, b99 = percentile(base, 50), percentile(base, 99)
        o50, o99 = percentile(ours, 50), percentile(ours, 99)
        print(
            f"{n:>11}   {b50:7.1f} / {b99:7.1f}        {o50:7.1f} / {o99:7.1f}"
            f"             {o50 / b50:5.2f}x / {o99 / b99:5.2f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=8931)
    main(parser.parse_args())

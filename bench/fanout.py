"""Delivery latency of one write to many subscribers, over a real daphne.

    .venv/bin/python bench/fanout.py [--connections 600] [--writes 50]

Starts daphne on a fresh database (SQLite and the in-memory layer, or
DATABASE_URL / REDIS_URL from the environment), opens N sockets subscribed to
one session, then PATCHes a task's progress M times over HTTP. For every
write it records when each socket got the frame. The baseline, measured in
the same run on the same sockets, is a ping → pong round trip: the cost of
the socket path alone.

Only 127.0.0.1 is used; the run is bounded by --connections and --writes.
"""

import argparse
import asyncio
import json
import resource
import statistics
import time
from pathlib import Path

import websockets
from benchserver import BenchServer


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def main(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    with BenchServer(args.port, SWITCHBOARD_RATE_PER_SECOND="10000") as server:
        port, token, env = args.port, server.token, server.env
        session = server.api("POST", "sessions", {"name": "bench"})
        task = server.api("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
        channel = f"session:{session['id']}"
        headers = {"Authorization": f"Bearer {token}"}
        rss_idle = rss_kib(server.process.pid)
        sockets = []
        started = time.perf_counter()
        for _ in range(args.connections):
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/", additional_headers=headers)
            await ws.send(json.dumps({"action": "subscribe", "channel": channel}))
            await ws.recv()
            sockets.append(ws)
        connect_seconds = time.perf_counter() - started
        rss_connected = rss_kib(server.process.pid)

        # Baseline: ping round trips on the same sockets.
        rtts = []
        for _ in range(args.writes):
            sent = time.perf_counter()
            await asyncio.gather(*(ws.send('{"action":"ping"}') for ws in sockets))
            arrivals = await asyncio.gather(*(recv_time(ws) for ws in sockets))
            rtts.extend(a - sent for a in arrivals)

        latencies = []
        loop = asyncio.get_running_loop()
        for n in range(args.writes):
            sent = time.perf_counter()
            write = loop.run_in_executor(
                None, server.api, "PATCH", f"tasks/{task['id']}", {"progress": n % 100}
            )
            arrivals = await asyncio.gather(*(recv_time(ws) for ws in sockets))
            await write
            latencies.extend(a - sent for a in arrivals)
        for ws in sockets:
            await ws.close()

    ms = 1000
    config = "PostgreSQL + Redis" if env.get("REDIS_URL") else "SQLite + in-memory layer"
    print(f"configuration          {config}")
    print(
        f"connections            {args.connections} (opened and subscribed in {connect_seconds:.1f} s)"
    )
    print(f"writes                 {args.writes} (each fanned out to every connection)")
    print(
        f"baseline ping RTT      p50 {percentile(rtts, 50) * ms:7.1f} ms   p99 {percentile(rtts, 99) * ms:7.1f} ms"
    )
    print(
        f"write → frame          p50 {percentile(latencies, 50) * ms:7.1f} ms   p99 {percentile(latencies, 99) * ms:7.1f} ms"
    )
    print(
        f"ratio to baseline      p50 {percentile(latencies, 50) / percentile(rtts, 50):7.2f} x    p99 {percentile(latencies, 99) / percentile(rtts, 99):7.2f} x"
    )
    print(f"mean write → frame     {statistics.mean(latencies) * ms:.1f} ms")
    per = (rss_connected - rss_idle) / max(1, args.connections)
    print(
        f"server memory          {rss_idle / 1024:.0f} MiB idle, {rss_connected / 1024:.0f} MiB with "
        f"{args.connections} subscribed sockets ({per:.0f} KiB each)"
    )


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def recv_time(ws) -> float:
    await ws.recv()
    return time.perf_counter()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=600)
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--port", type=int, default=8931)
    asyncio.run(main(parser.parse_args()))

"""What idle connections cost: memory per socket and CPU, on one process.

    .venv/bin/python bench/idle.py [--connections 3000] [--channels 100] [--hold 60]

Starts Switchboard (SQLite and the in-memory layer unless DATABASE_URL /
REDIS_URL say otherwise) pinned to core 0, opens N sockets from a Node.js
client on core 1, spread over the channels of K sessions (`--channels`), each
pinging every 30 s, and holds them. Reports the server's resident memory
before they connect and at the end of the hold (per socket), and its CPU use
while they idle, as a share of one core. The baseline
in the same run is bench/bare.py holding the same number of sockets (no
subscription, no protocol): the cost of a socket to daphne itself.
"""

import argparse
import json
import os
import resource
import subprocess
import time
from pathlib import Path

from benchserver import BareServer, BenchServer
from fanout import CLIENT_CPU, NODE, SERVER_CPU, ensure_node_client

TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def measure(pid: int, conf: dict, hold: float) -> dict:
    idle = rss_kib(pid)
    client = subprocess.Popen(
        ["taskset", "-c", CLIENT_CPU, "node", "idle-client.mjs", json.dumps({**conf, "hold": hold})],
        cwd=NODE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert client.stdout.readline().strip() == "ready", "clients did not connect"
    time.sleep(2)
    cpu0, wall0, held = cpu_seconds(pid), time.monotonic(), rss_kib(pid)
    done = client.stdout.readline().strip()
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
    after = rss_kib(pid)  # at the end of the hold, the sockets still open
    client.wait(30)
    return {"idle": idle, "held": held, "after": after, "cpu": cpu, "done": done}


def main(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 65536)), hard))
    ensure_node_client()
    n = args.connections
    with BareServer(args.port, cpus=SERVER_CPU) as bare:
        base = measure(bare.process.pid, {"url": f"ws://127.0.0.1:{args.port}/", "n": n,
                                          "token": "-", "channel": "-"}, args.hold)  # fmt: skip
    with BenchServer(args.port + 10, cpus=SERVER_CPU) as server:
        sessions = [
            server.api("POST", "sessions", {"name": f"idle {i}"}) for i in range(args.channels)
        ]
        ours = measure(
            server.process.pid,
            {"url": f"ws://127.0.0.1:{args.port + 10}/ws/", "n": n, "token": server.token,
             "channel": [f"session:{s['id']}" for s in sessions]},
            args.hold,
        )  # fmt: skip
    print(
        f"connections     {n} over {args.channels} channels, held {args.hold:.0f} s, "
        "each pinging every 30 s; memory at the end of the hold"
    )
    for name, row in (("bare ASGI", base), ("Switchboard", ours)):
        per = (row["after"] - row["idle"]) / n
        print(
            f"{name:<12}    {row['idle'] / 1024:6.1f} MiB idle, {row['held'] / 1024:6.1f} MiB "
            f"connected, {row['after'] / 1024:6.1f} MiB after the hold ({per:5.1f} KiB a "
            f"socket), CPU {row['cpu'] * 100:5.2f} % of a core ({row['done']})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument(
        "--channels", type=int, default=100, help="sessions the sockets spread over"
    )
    parser.add_argument("--hold", type=float, default=60)
    parser.add_argument("--port", type=int, default=8961)
    main(parser.parse_args())

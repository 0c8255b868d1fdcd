"""A resume storm: many open pages lose their server at once and come back.

    .venv/bin/python bench/storm.py [--sockets 2000]

PostgreSQL (a scratch database `switchboard_storm`, made afresh) and the
in-memory layer, one daphne on core 0. N copies of the pages' own socket
client (static/switchboard/js/socket.js, in Node.js on core 1, with the `ws`
package) subscribe to one session's channel. Then the server is killed
(SIGKILL), started again, and every client reconnects and resumes from its
cursor. Twice: with the old fixed schedule (every client waits exactly 1 s,
2 s, 4 s ... : the ceiling of each step) and with full jitter (a random wait
up to that ceiling). For each: the time from the loss until every client is
live again (p50, p90, all), and the peak of database transactions a second
while they come back (pg_stat_database, sampled every 0.25 s; a read outside
a transaction is one).

Only 127.0.0.1 is used; the run is bounded (180 s per storm at most).
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from benchserver import BenchServer, start_daphne, wait_until_up
from fanout import ensure_node_client

NODE = Path(__file__).resolve().parent / "node"
SERVER_CPU, CLIENT_CPU = "0", "1"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "switchboard_storm"


def fresh_database() -> str:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    return f"postgres://postgres@127.0.0.1:5432/{DB}"


def transactions() -> int:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (DB,)
        ).fetchone()
    return int(row[0])


def storm(sockets: int, jitter: bool, port: int) -> dict:
    env = {"DATABASE_URL": fresh_database(), "SWITCHBOARD_IDLE_TIMEOUT": "600"}
    env.pop("REDIS_URL", None)
    os.environ.pop("REDIS_URL", None)
    with BenchServer(port, cpus=SERVER_CPU, **env) as server:
        session = server.api("POST", "sessions", {"name": "storm"})
        task = server.api("POST", f"sessions/{session['id']}/tasks", {"name": "t"})
        for n in range(20):
            server.api("PATCH", f"tasks/{task['id']}", {"progress": n})
        client = subprocess.Popen(
            ["taskset", "-c", CLIENT_CPU, "node", str(NODE / "storm-client.mjs"),
             f"ws://127.0.0.1:{port}/ws/", f"http://127.0.0.1:{port}/api/v1", server.token,
             f"session:{session['id']}", str(sockets), "1" if jitter else "0"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert client.stdout.readline().strip() == "ready", "the clients did not all connect"
        time.sleep(1.0)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        server.process = start_daphne(port, "project.asgi:application", server.env, SERVER_CPU)
        server.processes = [server.process]
        samples = []
        while client.poll() is None:
            samples.append((time.monotonic(), transactions()))
            time.sleep(0.25)
        result = json.loads(client.stdout.read().strip().splitlines()[-1])
        wait_until_up(f"{server.base}/healthz")
    peak = 0.0
    for i, (t0, n0) in enumerate(samples):
        for t1, n1 in samples[i + 1 :]:
            if t1 - t0 >= 1.0:
                peak = max(peak, (n1 - n0) / (t1 - t0))
                break
    result["peak_tx_per_s"] = round(peak)
    result["tx_total"] = samples[-1][1] - samples[0][1] if samples else 0
    return result


def main(sockets: int) -> None:
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the server and Node inherit it
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 16384)), hard))
    ensure_node_client()
    for jitter in (False, True):
        r = storm(sockets, jitter, 18900)
        name = "full jitter" if jitter else "fixed schedule"
        print(f"{sockets} sockets, {name:14}: all live again after {r['all_live_ms'] / 1000:.2f} s "
              f"(p50 {r['p50_ms'] / 1000:.2f} s, p90 {r['p90_ms'] / 1000:.2f} s); database "
              f"peak {r['peak_tx_per_s']} transactions/s, {r['tx_total']} in all")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=2000)
    main(**vars(parser.parse_args()))

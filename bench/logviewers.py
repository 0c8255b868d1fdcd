"""Log lines a second end to end, with live viewers: posted in batches over
HTTP, stored, and delivered to every viewer's socket.

    .venv/bin/python bench/logviewers.py [--viewers 100] [--writers 4] [--batches 80]
    DATABASE_URL=postgres://…/switchboard_bench REDIS_URL=redis://127.0.0.1:6379/1 \\
        .venv/bin/python bench/logviewers.py [--processes 2]

A Node.js client (bench/node, pinned to core 1) opens the viewers, each
subscribed to the session's `logs:` channel, then its writers POST batches of
500 lines to `/api/v1/sessions/<id>/logs`, each writer one request after
another on a keep-alive connection. The server (pinned to core 0) stores each
batch and its event and sends the lines to every viewer. Timed: from the first
POST to the last line at the last viewer. The live line budget is lifted for
the run (it would skip lines past 2,000 a second per viewer, by design), so
every viewer gets every line.

Baseline, in the same run on the same daphne: bench/bare.py, which relays
each POST's body to every open socket (no parsing, no database, no layer).
Only 127.0.0.1 is used; the run is bounded (120 s for delivery).
"""

import argparse
import os

from benchserver import BareServer, BenchServer
from fanout import SERVER_CPU, ensure_node_client, node_client


def run(conf: dict) -> dict:
    return node_client("logviewers-client.mjs", conf, timeout=300)


def main(args) -> None:
    ensure_node_client()
    load = {"viewers": args.viewers, "writers": args.writers, "batches": args.batches,
            "lines": args.lines}  # fmt: skip
    with BareServer(args.port, cpus=SERVER_CPU) as bare:
        base = run({**load, "urls": [f"ws://127.0.0.1:{bare.port}/"], "channel": "",
                    "post_url": f"http://127.0.0.1:{bare.port}/"})  # fmt: skip
    with BenchServer(
        args.port + 10,
        processes=args.processes,
        cpus=SERVER_CPU,
        SWITCHBOARD_LOG_LINES_PER_SECOND="10000000",
        SWITCHBOARD_LOG_LINES_BURST="10000000",
    ) as server:
        session = server.api("POST", "sessions", {"name": "log viewers"})
        ours = run({
            **load, "token": server.token, "channel": f"logs:{session['id']}",
            "urls": [f"ws://127.0.0.1:{port}/ws/" for port in server.ports],
            "post_url": f"{server.base}/api/v1/sessions/{session['id']}/logs",
        })  # fmt: skip
    config = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    print(
        f"{config}, {args.processes} process(es); {args.viewers} viewers, {args.writers} writers,"
        f" {args.batches} batches of {args.lines} lines"
    )
    for name, row in (("bare ASGI app", base), ("Switchboard", ours)):
        print(
            f"{name:<14}  stored {row['lines'] / row['posted_s']:9.0f} lines/s"
            f"   delivered to all {row['lines'] / row['delivered_s']:9.0f} lines/s"
            f"   ({row['delivered_s']:.2f} s; failed posts {row['failed']},"
            f" viewers short {row['short']})"
        )
    ratio = base["delivered_s"] / ours["delivered_s"]
    print(f"ratio (delivered)  {ratio:.3f}x the bare app")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--batches", type=int, default=80)
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=8941)
    main(parser.parse_args())

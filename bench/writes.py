"""Progress reports a second that one server process takes, against a bare app.

    .venv/bin/python bench/writes.py [--workers 16] [--seconds 10]
    DATABASE_URL=postgres://…/switchboard_bench .venv/bin/python bench/writes.py

Sixteen workers, each on its own keep-alive connection (a Node.js client,
bench/node, on core 1), send `PATCH /api/v1/tasks/<id>` with a progress value,
one after another, each to a task of its own, for the given time; the server
(pinned to core 0) stores each report and its event. Baseline, in the same
run on the same daphne: bench/bare.py answering each POST. Two more rows
show the framework's floor on the same server: bench/floor.py's endpoints,
which go through the project's whole ASGI and middleware stack (and, for the
ninja one, the token check and a body schema) but store nothing.
The batch row: the same workers, each on a session of its own with
--batch-tasks running tasks, send `POST /api/v1/sessions/<id>/batch` with
one progress report for every task (100 events a request), and the figure
is events a second. `--only batch` runs that row alone.
The token is a worker's (bench/benchserver.py `worker_token`: not a
superuser, with `view_session` and `change_session`), so its permissions are
checked as a deployment's are, and both request-rate throttles are on, with
limits far above what one process answers (at the defaults, 200 a second per
token and 500 per address, they would be what is measured).
Only 127.0.0.1 is used; the run is bounded by --seconds.
"""

import argparse
import json
import os
from pathlib import Path

from benchserver import BareServer, BenchServer
from fanout import SERVER_CPU, ensure_node_client, node_client

# Throttles on (their code runs on every request), never the limit reached.
THROTTLE_RATE = "1000000"


def run(conf: dict) -> dict:
    return node_client("writes-client.mjs", conf, timeout=conf["seconds"] + 120)


def batches(server: BenchServer, args, token: str) -> dict:
    """Workers each on a session of its own, a report on each of its tasks a request."""
    requests = []
    for n in range(args.workers):
        session = server.api("POST", "sessions", {"name": f"batch {n}"}, token=token)
        tasks = [
            server.api("POST", f"sessions/{session['id']}/tasks", {"name": f"t{k}",
                                                                    "status": "running"},
                       token=token)
            for k in range(args.batch_tasks)
        ]  # fmt: skip
        body = {"tasks": [{"id": int(t["id"]), "progress": 1} for t in tasks]}
        text = json.dumps(body).replace('"progress": 1', '"progress": __N__', 1)
        requests.append({"method": "POST", "url": f"{server.base}/api/v1/sessions/{session['id']}/batch",
                         "body": text})  # fmt: skip
    before = cpu_seconds(server.process.pid)
    row = run({"workers": args.workers, "seconds": args.seconds, "token": token,
               "requests": requests})  # fmt: skip
    row["cpu"] = cpu_seconds(server.process.pid) - before
    return row


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far, user and system (/proc/<pid>/stat): less
    moved by the machine's other load than the wall-clock rate is."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_only(args) -> None:
    ensure_node_client()
    with BenchServer(
        args.port + 20,
        cpus=SERVER_CPU,
        SWITCHBOARD_TOKEN_RATE=THROTTLE_RATE,
        SWITCHBOARD_ADDRESS_RATE=THROTTLE_RATE,
    ) as server:
        row = batches(server, args, server.worker_token())
    print_batch(row, args)


def print_batch(row: dict, args) -> None:
    events = row["ok"] * args.batch_tasks
    rate = events / row["seconds"]
    per_thousand = row["cpu"] * 1000 / events if events else float("nan")
    print(
        f"{'batch':<16}  {rate:8.1f} events/s      ({row['ok'] / row['seconds']:.1f} requests/s of"
        f" {args.batch_tasks} reports)   failed {row['failed']} {row['errors'] or ''}"
    )
    print(f"{'':<16}  {per_thousand:8.3f} server CPU seconds per 1,000 events")


def main(args) -> None:
    if args.only == "batch":
        return batch_only(args)
    ensure_node_client()
    with BareServer(args.port, cpus=SERVER_CPU) as bare:
        base = run({
            "workers": args.workers, "seconds": args.seconds,
            "requests": [{"method": "POST", "url": f"http://127.0.0.1:{bare.port}/",
                          "body": '{"progress": __N__}'}],
        })  # fmt: skip
    with BenchServer(
        args.port + 10,
        cpus=SERVER_CPU,
        DJANGO_SETTINGS_MODULE="bench.floor_settings",
        SWITCHBOARD_TOKEN_RATE=THROTTLE_RATE,
        SWITCHBOARD_ADDRESS_RATE=THROTTLE_RATE,
    ) as server:
        token = server.worker_token()
        floor_django = run({
            "workers": args.workers, "seconds": args.seconds,
            "requests": [{"method": "POST", "url": f"{server.base}/bench/django",
                          "body": '{"progress": __N__}'}],
        })  # fmt: skip
        floor_ninja = run({
            "workers": args.workers, "seconds": args.seconds, "token": token,
            "requests": [{"method": "PATCH", "url": f"{server.base}/bench/ninja/{n}",
                          "body": '{"progress": __N__}'} for n in range(args.workers)],
        })  # fmt: skip
        session = server.api("POST", "sessions", {"name": "writes"}, token=token)
        tasks = [
            server.api(
                "POST",
                f"sessions/{session['id']}/tasks",
                {"name": f"t{n}", "status": "running"},
                token=token,
            )
            for n in range(args.workers)
        ]
        ours = run({
            "workers": args.workers, "seconds": args.seconds, "token": token,
            "requests": [{"method": "PATCH", "url": f"{server.base}/api/v1/tasks/{t['id']}",
                          "body": '{"progress": __N__}'} for t in tasks],
        })  # fmt: skip
        batch = batches(server, args, token)
    config = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    print(f"database        {config}; {args.workers} keep-alive workers for {args.seconds} s")
    bare_rate = base["ok"] / base["seconds"]
    rows = (
        ("bare ASGI app", base),
        ("Django, no write", floor_django),
        ("ninja, no write", floor_ninja),
        ("Switchboard", ours),
    )
    for name, row in rows:
        rate = row["ok"] / row["seconds"]
        print(
            f"{name:<16}  {rate:8.1f} requests/s  {rate / bare_rate:6.3f}x the bare app"
            f"   failed {row['failed']} {row['errors'] or ''}"
        )
    print_batch(batch, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--port", type=int, default=8981)
    parser.add_argument("--batch-tasks", type=int, default=100)
    parser.add_argument("--only", choices=["batch"], help="run only this row")
    main(parser.parse_args())

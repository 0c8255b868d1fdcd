"""What `connect(app)` costs a Celery worker's tasks, against the same worker without it.

    .venv/bin/python bench/celery_overhead.py [--tasks 1000] [--rounds 3]
        [--broker redis://127.0.0.1:6379/10] [--kinds noop cpu]

A real Celery worker (`--pool=solo`, one process, pinned to core 0) runs
`--tasks` short tasks of one kind from a queue filled before it starts:
`noop` (returns at once: what is measured is Celery's own cost per task) and
`cpu` (a fixed loop calibrated at the start of the run to about 5 ms, the
same work in every round). Three modes, alternated in every round (their
order rotates from round to round):

- `without`: the worker as it is; the baseline;
- `with`: the same app with `connect(app)`, reporting to a real Switchboard
  server this script starts (daphne on core 1, SQLite in a temporary folder
  unless DATABASE_URL is set; a staff token);
- `down`: `connect(app)` with SWITCHBOARD_URL on a port of 127.0.0.1 where
  nothing listens (connection refused).

The worker's own signal handlers (bench/celery_app.py) take each task's
time from before Switchboard's task_prerun to after its task_postrun; the
wall time of a round is from the first task's start to the last one's end,
which also holds what Celery and the signals do between tasks. The figures
are the median round of each mode: wall time, the overhead per task in µs
and as a share of the baseline's wall time, and the p50 / p99 of a task's
own time; and the same for the CPU time the worker process spent (all its
threads: Switchboard's sender included), which other work on the machine
moves less than the wall time. At the end the script counts the tasks the server holds as
completed: every task of every `with` round should be there.

Only 127.0.0.1 is used; every round is bounded (--tasks, and a timeout).
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from benchserver import PY, ROOT, BenchServer
from celery import Celery

WORKER_CPU, SERVER_CPU = "0", "1"
MODES = ("without", "with", "down")
ROUND_TIMEOUT = 300.0  # seconds: a round that takes longer is a failure of the bench


def calibrate(seconds: float = 0.005) -> int:
    """Loop turns of bench.cpu that take about `seconds` here (median of 7)."""
    turns = 10000
    while True:
        times = []
        for _ in range(7):
            start = time.perf_counter()
            total = 0
            for n in range(turns):
                total += n * n
            times.append(time.perf_counter() - start)
        took = statistics.median(times)
        if took > seconds / 4:
            return max(1, round(turns * seconds / took))
        turns *= 4


def closed_port() -> int:
    """A port of 127.0.0.1 with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fill(broker: str, queue: str, name: str, count: int) -> None:
    sender = Celery("bench-sender", broker=broker)
    with sender.producer_or_acquire() as producer:
        for _ in range(count):
            sender.send_task(name, queue=queue, producer=producer)


def purge(broker: str, queue: str) -> None:
    sender = Celery("bench-sender", broker=broker)
    with sender.connection_for_write() as conn:
        try:
            conn.default_channel.queue_delete(queue)
        except Exception:  # noqa: BLE001 (a queue already gone is fine)
            pass


def one_round(args, kind: str, mode: str, server: BenchServer, spin: int, tmp: Path) -> dict:
    queue = f"sbbench-{uuid.uuid4().hex[:8]}"
    out = tmp / f"{queue}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # a worker of its own, not of the project
    env.update(
        PYTHONPATH=f"{ROOT / 'bench'}:{ROOT / 'client'}",
        BENCH_BROKER=args.broker,
        BENCH_QUEUE=queue,
        BENCH_TASKS=str(args.tasks),
        BENCH_OUT=str(out),
        BENCH_SPIN=str(spin),
        BENCH_CONNECT="0" if mode == "without" else "1",
    )
    if mode != "without":
        url = server.base if mode == "with" else f"http://127.0.0.1:{closed_port()}"
        env.update(SWITCHBOARD_URL=url, SWITCHBOARD_TOKEN=server.token)
    fill(args.broker, queue, f"bench.{kind}", args.tasks)
    log = (tmp / f"{queue}.log").open("wb")
    worker = subprocess.Popen(
        ["taskset", "-c", WORKER_CPU, PY, "-m", "celery", "-A", "celery_app", "worker",
         "--pool=solo", "-l", "warning", "-n", f"{queue}@%h",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT / "bench", env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        end = time.monotonic() + ROUND_TIMEOUT
        while not out.exists():
            if worker.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the {mode} worker did not finish; see {log.name}")
            time.sleep(0.05)
        found = json.loads(out.read_text())
    finally:
        worker.send_signal(signal.SIGTERM)  # a warm shutdown: connect() sends what it holds
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        log.close()
        purge(args.broker, queue)
    spans = found["spans"]
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    own = sorted(e - s for s, e in spans)
    p50, p99 = own[len(own) // 2], own[int(len(own) * 0.99)]
    return {"wall": wall, "cpu": found["cpu"], "p50": p50, "p99": p99}


def completed_on(server: BenchServer, expected: int, wait: float = 120.0) -> int:
    """Tasks the server holds as completed, once that many arrived or `wait` ran out."""
    end = time.monotonic() + wait
    while True:
        count = server.api("GET", "tasks?status=completed&limit=1")["count"]
        if count >= expected or time.monotonic() > end:
            return count
        time.sleep(1)


def main(args) -> None:
    spin = calibrate()
    results: dict[tuple[str, str], list[dict]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="sbbench-celery-") as where,
        BenchServer(args.port, cpus=SERVER_CPU) as server,
    ):
        for kind in args.kinds:
            for number in range(args.rounds):
                order = MODES[number % 3 :] + MODES[: number % 3]
                for mode in order:
                    row = one_round(args, kind, mode, server, spin, Path(where))
                    results.setdefault((kind, mode), []).append(row)
                    print(f"  {kind:<5} {mode:<8} round {number + 1}: {row['wall']:.3f} s")
        expected = args.tasks * args.rounds * len(args.kinds)
        stored = completed_on(server, expected)
    print(
        f"{args.tasks} tasks a round, {args.rounds} rounds a mode, worker --pool=solo on core"
        f" {WORKER_CPU}, server on core {SERVER_CPU}; cpu task: {spin} loop turns"
    )
    print(f"{'kind':<5} {'mode':<8} {'wall s':>7} {'µs/task':>8} {'overhead':>9}"
          f" {'cpu s':>7} {'µs/task':>8} {'overhead':>9} {'p50 ms':>7} {'p99 ms':>7}"
          f"   wall of each round (s)")  # fmt: skip
    for kind in args.kinds:
        base = {
            key: statistics.median(r[key] for r in results[(kind, "without")])
            for key in ("wall", "cpu")
        }
        for mode in MODES:
            rows = results[(kind, mode)]
            cells = []
            for key in ("wall", "cpu"):
                value = statistics.median(r[key] for r in rows)
                per_task = (value - base[key]) / args.tasks * 1e6
                cells.append(f"{value:7.3f} {per_task:8.1f} {value / base[key] - 1:+9.1%}")
            p50 = statistics.median(r["p50"] for r in rows) * 1e3
            p99 = statistics.median(r["p99"] for r in rows) * 1e3
            walls = " ".join(f"{r['wall']:.3f}" for r in rows)
            print(f"{kind:<5} {mode:<8} {' '.join(cells)} {p50:7.3f} {p99:7.3f}   {walls}")
    print(f"completed tasks on the server: {stored} of {expected} sent in `with` rounds")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks a round (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode (3)")
    parser.add_argument(
        "--broker",
        default="redis://127.0.0.1:6379/10",
        help="the Celery broker (redis://127.0.0.1:6379/10)",
    )
    parser.add_argument("--kinds", nargs="+", default=["noop", "cpu"], choices=["noop", "cpu"])
    parser.add_argument("--port", type=int, default=8995, help="the server's port (8995)")
    main(parser.parse_args())

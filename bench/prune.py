"""Retention at scale: live writers while `prune` deletes a session of a million lines.

    .venv/bin/python bench/prune.py [--lines 1000000] [--rounds 3] [--seconds 30]
    .venv/bin/python bench/prune.py --quick        # 100,000 lines, one round

A scratch PostgreSQL database `wt_prune_bench` is made afresh, with 8
sessions of one running task each, written by 8 writer processes through
the services (`sessions_app.services.update_task`, and every fourth write
`logs_app.services.append_entries` of 20 lines), as fast as they can.

Each round loads a session of `--lines` log lines with one log.append event
per 500 lines, their places on its logs channel linked by `prev` as the
services would make them, in set-based statements (INSERT ... SELECT
generate_series), then VACUUM ANALYZE. Then three phases, writers running
in each:

- "baseline": no prune, for `--seconds`;
- "ended": the session ended 40 days ago, its events too, and
  `prune --older-than 30` running (in a thread of the bench's process,
  through call_command) from the phase's start until it is done;
- "running" (after loading again): the session still running and
  `prune --keep-lines 1000` trimming it while it runs.

A write's latency is the time its service call took; for a prune phase only
writes that began while the prune ran count. p50/p99 are per phase and
round, and each ratio compares a prune phase with the baseline of the same
round (so under the same load from the rest of the machine). While prune
runs, pg_stat_activity is sampled every 5 ms for what the writers' busy
backends wait on. Only 127.0.0.1 is used; every run is bounded.
"""

import argparse
import io
import multiprocessing
import statistics
import threading
import time
import traceback
from collections import Counter
from datetime import timedelta

import psycopg
from scratch import Scratch
from writers import by_type, server_facts, top_events, waits_text

SCRATCH = Scratch("wt_prune_bench")
URL = SCRATCH.url
APP = "bench-prune"
WRITERS = 8
PER_EVENT = 500


def make_sessions() -> list[tuple[int, int]]:
    """8 running sessions of one running task each: (session id, task id)."""
    SCRATCH.setup_django()
    from sessions_app import services

    made = []
    for n in range(WRITERS):
        session, _ = services.create_session(name=f"writer {n}")
        services.update_session(session.pk, status="running")
        made.append(
            (session.pk, services.create_task(session.pk, name="w", status="running")[0].pk)
        )
    return made


def worker(index: int, pair: tuple[int, int], commands, results, go, stop) -> None:
    """One writer process; each command starts a run, which `stop` ends."""
    SCRATCH.setup_django()
    from django.db import connection

    connection.settings_dict["OPTIONS"]["application_name"] = APP
    from logs_app import services as log_services
    from sessions_app import services

    session_id, task_id = pair
    lines = [{"message": f"writer {index} line {n} " + "x" * 60} for n in range(20)]
    while commands.get() is not None:
        try:
            services.update_task(task_id, progress=1)  # warm
            results.put(("ready", index))
            go.wait()
            done = []
            n = 0
            while not stop.is_set():
                began = time.monotonic()
                n += 1
                if n % 4:
                    services.update_task(task_id, progress=n % 100)
                else:
                    log_services.append_entries(session_id, lines)
                done.append((began, time.monotonic() - began))
            results.put(("done", done))
        except Exception:
            results.put(("error", traceback.format_exc()))


class Writers:
    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        context = multiprocessing.get_context("spawn")
        self.go = context.Event()
        self.stop = context.Event()
        self.results = context.Queue()
        self.commands = [context.Queue() for _ in pairs]
        self.procs = [
            context.Process(
                target=worker,
                args=(n, pair, self.commands[n], self.results, self.go, self.stop),
            )
            for n, pair in enumerate(pairs)
        ]
        for proc in self.procs:
            proc.start()

    def take(self, kind: str, timeout: float = 600):
        got, value = self.results.get(timeout=timeout)
        if got == "error":
            raise RuntimeError(f"a writer failed:\n{value}")
        assert got == kind, (got, kind)
        return value

    def run(self, seconds: float, during=None):
        """Every write's (start, latency) for `seconds`, or while `during()`
        runs (from the start), and its result."""
        self.go.clear()
        self.stop.clear()
        for queue in self.commands:
            queue.put(True)
        for _ in self.procs:
            self.take("ready")
        self.go.set()
        if during:
            outcome = during()
        else:
            time.sleep(seconds)
            outcome = None
        self.stop.set()
        writes = [w for _ in self.procs for w in self.take("done")]
        return writes, outcome

    def close(self) -> None:
        for queue in self.commands:
            queue.put(None)
        for proc in self.procs:
            proc.join(30)


def load(lines: int, ended: bool) -> int:
    """A session of `lines` log lines, one log.append event per PER_EVENT, in
    three set-based statements; ended 40 days ago (events too), or running."""
    from django.db import connection
    from django.utils import timezone

    from live.models import Event, EventChannel
    from logs_app.models import LogEntry
    from sessions_app import services
    from sessions_app.models import Session

    session = services.create_session(name="a long job")[0]
    services.update_session(session.pk, status="running")
    events = -(-lines // PER_EVENT)
    event, placed, log = (m._meta.db_table for m in (Event, EventChannel, LogEntry))
    ts = "now() - interval '40 days'" if ended else "now()"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH made AS (
                INSERT INTO {event} (kind, session_id, ts, data)
                SELECT 'log.append', %s, {ts}, jsonb_build_object('count', %s)
                FROM generate_series(1, %s) RETURNING id)
            INSERT INTO {placed} (event_id, channel, prev)
            SELECT id, %s, coalesce(lag(id) OVER (ORDER BY id), %s) FROM made""",
            [session.pk, PER_EVENT, events, f"logs:{session.pk}", 0],
        )
        cursor.execute(
            f"""INSERT INTO {log} (session_id, ts, level, logger, message, seq)
            SELECT %s, {ts}, 20, 'bench', 'line ' || (e.n * %s + k) || ' of a long job, '
                   || 'with about as much text as a real line has', e.id
            FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM {event}
                  WHERE session_id = %s AND kind = 'log.append') e,
                 generate_series(0, %s - 1) k
            WHERE e.n * %s + k < %s""",
            [session.pk, PER_EVENT, session.pk, PER_EVENT, PER_EVENT, lines],
        )
    if ended:
        services.update_session(session.pk, status="completed")
        long_ago = timezone.now() - timedelta(days=40)
        Session.objects.filter(pk=session.pk).update(finished_at=long_ago)
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return session.pk


def sample(stop: threading.Event, seen: Counter) -> None:
    SCRATCH.sample_waits(APP, stop, seen)


def pruning(args: list[str], seen: Counter):
    """A `during` for Writers.run: the prune command, timed, with the sampler."""

    def during() -> tuple[float, float, float]:
        from django.core.management import call_command
        from django.db import connection

        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(stop, seen))
        sampler.start()
        began = time.monotonic()
        try:
            call_command("prune", *args, stdout=io.StringIO())
        finally:
            ended = time.monotonic()
            stop.set()
            sampler.join(30)
            connection.close()
        return began, ended, ended - began

    return during


def quantiles(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def main(args) -> None:
    if args.quick:
        args.lines, args.rounds, args.seconds = 100_000, 1, 5.0
    began = time.monotonic()
    SCRATCH.make()
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        pairs = pool.apply(make_sessions)
    SCRATCH.setup_django()
    writers = Writers(pairs)
    rows = []
    seen = {"ended": Counter(), "running": Counter()}
    try:
        for round_ in range(args.rounds):
            load(args.lines, ended=True)
            base, _ = writers.run(args.seconds)
            figures = {"baseline": (quantiles([lat for _, lat in base]), len(base) / args.seconds)}
            ended, (start, end, took) = writers.run(
                0, pruning(["--older-than", "30"], seen["ended"])
            )
            during = [lat for t, lat in ended if start <= t <= end]
            figures["ended"] = (quantiles(during), len(during) / took, took)
            load(args.lines, ended=False)
            keep = pruning(["--keep-lines", "1000"], seen["running"])
            running, (start, end, took) = writers.run(0, keep)
            during = [lat for t, lat in running if start <= t <= end]
            figures["running"] = (quantiles(during), len(during) / took, took)
            rows.append(figures)
            print(f"round {round_ + 1}: {figures}", flush=True)
    finally:
        writers.close()
    SCRATCH.drop()

    print()
    print(f"{server_facts()}; {WRITERS} writer processes through the services; "
          f"a session of {args.lines:,} lines ({args.lines // PER_EVENT:,} log.append events); "
          f"baseline {args.seconds:g} s; {args.rounds} round(s); "
          f"{time.monotonic() - began:.0f} s in all")  # fmt: skip
    print()
    print("| round | baseline p50 / p99 ms | writes/s | prune | p50 / p99 ms during it "
          "| writes/s | p99 ratio | prune s | lines/s |")  # fmt: skip
    print("|--:|--:|--:|:--|--:|--:|--:|--:|--:|")
    ratios: dict[str, list[float]] = {"ended": [], "running": []}
    for n, figures in enumerate(rows, 1):
        (b50, b99), brate = figures["baseline"]
        for kind, what in (("ended", "--older-than 30"), ("running", "--keep-lines 1000")):
            (p50, p99), rate, took = figures[kind]
            ratios[kind].append(p99 / b99)
            gone = args.lines if kind == "ended" else args.lines - 1000
            print(f"| {n} | {b50:.1f} / {b99:.1f} | {brate:.0f} | `{what}` | {p50:.1f} / {p99:.1f} "
                  f"| {rate:.0f} | {p99 / b99:.2f} | {took:.1f} | {gone / took:,.0f} |")  # fmt: skip
    print()
    for kind in ratios:
        values = ratios[kind]
        print(f"p99 ratio, {kind}: median {statistics.median(values):.2f}, "
              f"spread {min(values):.2f}–{max(values):.2f}; writers' waits while it ran: "
              f"{waits_text(by_type(seen[kind]))}; top: {top_events(seen[kind]) or 'none'}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of the pruned session")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three phases")
    parser.add_argument("--seconds", type=float, default=20.0, help="the baseline phase")
    parser.add_argument("--quick", action="store_true", help="100,000 lines, one round")
    main(parser.parse_args())

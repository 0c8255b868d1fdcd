"""Writers on many sessions: the event log's ordering against no ordering at all.

    .venv/bin/python bench/writers.py [--seconds 4] [--rounds 3] [--quick]
    .venv/bin/python bench/writers.py --processes 1,2 --sessions 1 --seconds 10
    .venv/bin/python bench/writers.py --insert-delay-ms 50 --processes 1,4 --sessions 16

A scratch PostgreSQL database `bench_writers` is made afresh, with 256
sessions of one running task each. P writer processes (1, 2, 4) call
`sessions_app.services.update_task(task_id, progress=n)` directly (no HTTP:
what is measured is the database work of a write) on the tasks of K sessions
(1, 16, 256), spread round-robin: writer w takes tasks w, w+P, w+2P, ...
(mod K), so with K = 1 every writer reports on the one task. Each report is
one transaction storing one progress.update event.

Three modes, in the same run, taking turns (the order turns every round):
"ordered", the event log as shipped (per-session event lock and the
in-flight mark, `switchboard_enter`); "baseline", the same writes with
`live.ordering.lock` made a no-op in the writer processes: plain inserts,
nothing keeping ids in commit order (the least the job needs); and
"global", every writer taking one and the same event lock through its
commit, as the design before this one did (for the before and after). What update_task
itself locks (the session and task rows, FOR NO KEY UPDATE) is there in both.
Events a second are medians of the rounds; the ratio is ordered/baseline of
those medians. Each round's own ratio (its two runs back to back, so under
the same load from the rest of the machine) is shown too, with its median.

While writers run, pg_stat_activity is sampled every 5 ms: of the writer
backends seen busy (state active), the share waiting, per wait_event_type
(all of them: Lock, LWLock, IO, IPC, Client, ...), pooled over the rounds.
A writer between two statements of its transaction is "idle in transaction"
(ClientRead) and not counted as busy. The writer processes are started once
and kept for every run. Only 127.0.0.1 is used; every run is bounded.
"""

import argparse
import multiprocessing
import os
import statistics
import threading
import time
import traceback
from collections import Counter

import psycopg
from scratch import ADMIN, Scratch

SCRATCH = Scratch("bench_writers")
URL = SCRATCH.url
# The writers' connections carry this application_name, so the sampler sees only them.
APP = "bench-writers"
MODES = ("baseline", "ordered", "global")
WAIT_TYPES = ("Lock", "LWLock", "IO", "IPC", "Client", "Activity", "BufferPin", "Timeout")


def make_tasks(count: int) -> list[int]:
    """`count` sessions, each with one running task: the tasks' ids."""
    SCRATCH.setup_django()
    from sessions_app import services

    tasks = []
    for n in range(count):
        session, _ = services.create_session(name=f"writers {n}")
        tasks.append(services.create_task(session.pk, name="w", status="running")[0].pk)
    return tasks


def worker(index: int, commands, results, go) -> None:
    """One writer process, kept for every run: each command names a mode, the
    cell's tasks, the number of writers and the seconds to write for."""
    SCRATCH.setup_django()
    from django.db import connection

    connection.settings_dict["OPTIONS"]["application_name"] = APP
    from live import ordering
    from sessions_app import services

    ordered = ordering.lock

    def unordered(session_id: int | None) -> None:
        return None

    def one_lock(session_id: int | None) -> None:
        ordered(0)  # every writer on one key: the design before, for comparison

    modes = {"ordered": ordered, "baseline": unordered, "global": one_lock}

    while (command := commands.get()) is not None:
        mode, tasks, processes, seconds = command
        try:
            ordering.lock = modes[mode]
            mine = tasks[index % len(tasks) :: processes]
            services.update_task(mine[0], progress=0)  # warm, in this mode
            results.put(("ready", index))
            go.wait()
            started = time.monotonic()
            ends = started + seconds
            n = 0
            while time.monotonic() < ends:
                n += 1
                services.update_task(mine[n % len(mine)], progress=n % 100)
            results.put(("done", n / (time.monotonic() - started)))
        except Exception:
            results.put(("error", traceback.format_exc()))


def sample(stop: threading.Event, seen: Counter) -> None:
    SCRATCH.sample_waits(APP, stop, seen)


class Writers:
    """The pool of writer processes, started once."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.go = context.Event()
        self.results = context.Queue()
        self.commands = [context.Queue() for _ in range(count)]
        self.procs = [
            context.Process(target=worker, args=(n, self.commands[n], self.results, self.go))
            for n in range(count)
        ]
        for proc in self.procs:
            proc.start()

    def take(self, kind: str):
        got, value = self.results.get(timeout=120)
        if got == "error":
            raise RuntimeError(f"a writer failed:\n{value}")
        assert got == kind, (got, kind)
        return value

    def run(self, mode: str, tasks: list[int], processes: int, seconds: float):
        """Events a second of `processes` writers, and what the sampler saw."""
        self.go.clear()
        for n in range(processes):
            self.commands[n].put((mode, tasks, processes, seconds))
        for _ in range(processes):
            self.take("ready")
        seen: Counter = Counter()
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(stop, seen))
        sampler.start()
        self.go.set()
        rate = sum(self.take("done") for _ in range(processes))
        stop.set()
        sampler.join(30)
        return rate, seen

    def close(self) -> None:
        for queue in self.commands:
            queue.put(None)
        for proc in self.procs:
            proc.join(30)


def by_type(seen: Counter) -> dict[str, float]:
    """Share of busy samples waiting, per wait_event_type."""
    busy = seen["busy", ""]
    shares: Counter = Counter()
    for (wait_type, _), count in seen.items():
        if wait_type not in ("", "busy", "samples"):
            shares[wait_type] += count
    return {t: c / busy for t, c in shares.items()} if busy else {}


def top_events(seen: Counter, count: int = 3) -> str:
    busy = seen["busy", ""]
    events = [
        (c, f"{t}:{e}") for (t, e), c in seen.items() if t not in ("", "busy", "samples") and busy
    ]
    return ", ".join(f"{name} {c / busy:.1%}" for c, name in sorted(events, reverse=True)[:count])


def waits_text(shares: dict[str, float]) -> str:
    parts = [f"{t} {shares[t]:.1%}" for t in sorted(shares, key=shares.get, reverse=True)]
    return ", ".join(parts) or "none"


def slow_inserts(milliseconds: float) -> None:
    """Every event insert waits this long (a stand-in for a slow disk or a busy
    primary): what a lock held through the insert and the commit costs then."""
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION bench_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" PERFORM pg_sleep({milliseconds / 1000.0}); RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER bench_slow BEFORE INSERT ON sessions_app_event"
            " FOR EACH ROW EXECUTE FUNCTION bench_slow()"
        )


def server_facts() -> str:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
    return f"PostgreSQL {version}, synchronous_commit={sync}, {os.cpu_count()} cores"


def main(args) -> None:
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 4.0
    if args.quick:
        args.rounds = 1
    processes = [int(p) for p in args.processes.split(",")]
    sessions = [int(k) for k in args.sessions.split(",")]
    began = time.monotonic()
    SCRATCH.make()
    if args.insert_delay_ms:
        slow_inserts(args.insert_delay_ms)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        tasks = pool.apply(make_tasks, (max(sessions),))
    writers = Writers(max(processes))
    cells = [(p, k) for p in processes for k in sessions]
    rates: dict[tuple, list[float]] = {}
    seen: dict[tuple, Counter] = {}
    try:
        for round_ in range(args.rounds):
            for p, k in cells:
                for mode in MODES[round_ % 3 :] + MODES[: round_ % 3]:
                    rate, saw = writers.run(mode, tasks[:k], p, args.seconds)
                    rates.setdefault((p, k, mode), []).append(rate)
                    seen.setdefault((p, k, mode), Counter()).update(saw)
    finally:
        writers.close()
    with psycopg.connect(URL, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM sessions_app_event").fetchone()[0]
    SCRATCH.drop()

    delay = (
        f"every event insert slowed by {args.insert_delay_ms:g} ms; "
        if args.insert_delay_ms
        else ""
    )
    print(f"{server_facts()}; {delay}writers through sessions_app.services.update_task, "
          f"{args.seconds:g} s a run, median of {args.rounds} round(s), the modes taking turns; "
          f"{stored} events stored in all; {time.monotonic() - began:.0f} s in all")  # fmt: skip
    print()
    print("| P | K | baseline ev/s | ordered ev/s | ordered/baseline "
          "| each round's (median) | one global lock ev/s | global/baseline "
          "| waiting, baseline | waiting, ordered |")  # fmt: skip
    print("|--:|--:|--:|--:|--:|:--|--:|--:|:--|:--|")
    for p, k in cells:
        base = statistics.median(rates[p, k, "baseline"])
        ordered = statistics.median(rates[p, k, "ordered"])
        single = statistics.median(rates[p, k, "global"])
        paired = [
            o / b for o, b in zip(rates[p, k, "ordered"], rates[p, k, "baseline"], strict=True)
        ]
        each = " ".join(f"{r:.2f}" for r in paired)
        flag = " **below 0.8**" if k >= 16 and ordered < 0.8 * base else ""
        print(f"| {p} | {k} | {base:.0f} | {ordered:.0f} | {ordered / base:.2f}{flag} "
              f"| {each} ({statistics.median(paired):.2f}) "
              f"| {single:.0f} | {single / base:.2f} "
              f"| {waits_text(by_type(seen[p, k, 'baseline']))} "
              f"| {waits_text(by_type(seen[p, k, 'ordered']))} |")  # fmt: skip
    print()
    print("Wait events, most seen (share of busy writer backends), and busy backends per sample:")
    print()
    print("| P | K | mode | busy/sample | top wait events |")
    print("|--:|--:|:--|--:|:--|")
    for p, k in cells:
        for mode in MODES:
            saw = seen[p, k, mode]
            busy = saw["busy", ""] / max(saw["samples", ""], 1)
            print(f"| {p} | {k} | {mode} | {busy:.2f} | {top_events(saw) or 'none'} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, help="each run (default 4; --quick: 1)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode per cell")
    parser.add_argument("--processes", default="1,2,4", help="writer processes (P)")
    parser.add_argument("--sessions", default="1,16,256", help="sessions written to (K)")
    parser.add_argument("--quick", action="store_true", help="a short run: 1 s a run, one round")
    parser.add_argument("--insert-delay-ms", type=float, default=0,
                        help="slow every event insert by this much (a slow disk)")  # fmt: skip
    main(parser.parse_args())

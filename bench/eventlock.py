"""What the event lock costs writers on PostgreSQL, with one and two processes.

    .venv/bin/python bench/eventlock.py [--seconds 10]

A scratch database `switchboard_eventlock` is made afresh. Each writer is a
process of its own calling the services directly (no HTTP: what is measured
is the database work of a write, the part the lock serializes): one progress
writer; two, each on a task of its own in one session; one progress writer
beside one posting batches of 500 log lines to another session. Measured with
the event lock as it is, and with it taken out: the baseline, the same
writes with nothing keeping ids in commit order (the least the job needs).
While they run, pg_stat_activity is sampled every 5 ms: "waiting" is the
share of writers seen busy that were waiting for the lock (the most of any
round). The modes take turns, a few rounds of each; medians are reported.
"""

import argparse
import multiprocessing
import statistics
import time

import psycopg
from scratch import Scratch

SCRATCH = Scratch("switchboard_eventlock")
URL = SCRATCH.url


def make_jobs(count: int) -> tuple[list[tuple[str, int]], tuple[str, int]]:
    """Progress writers' tasks, and a log writer's session (another session)."""
    SCRATCH.setup_django()
    from sessions_app import services

    session, _ = services.create_session(name="eventlock")
    tasks = [
        ("progress", services.create_task(session.pk, name=f"w{n}", status="running")[0].pk)
        for n in range(count)
    ]
    return tasks, ("logs", services.create_session(name="eventlock logs")[0].pk)


def writer(job: tuple[str, int], seconds: float, locked: bool, start, counts) -> None:
    """Progress reports on a task, or batches of 500 log lines to a session."""
    SCRATCH.setup_django()
    from live import ordering
    from logs_app import services as logs
    from sessions_app import services

    if not locked:
        ordering.lock = lambda session_id: None
    kind, pk = job
    lines = [{"message": f"GET /items/{n} 200 {n % 90}ms", "level": 20} for n in range(500)]

    def write(n: int) -> int:
        if kind == "logs":
            return len(logs.append_entries(pk, lines))
        services.update_task(pk, progress=n % 100)
        return 1

    write(0)  # warm: connection, imports
    start.wait()
    ends = time.monotonic() + seconds
    n = done = 0
    while time.monotonic() < ends:
        n += 1
        done += write(n)
    counts.put((kind, done))


def sample_waits(stop, result) -> None:
    waiting = samples = rounds = 0
    with psycopg.connect(URL, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE wait_event = 'advisory'), count(*)"
                " FROM pg_stat_activity WHERE datname = %s AND state = 'active'"
                " AND pid <> pg_backend_pid()",
                [SCRATCH.name],
            ).fetchone()
            rounds += 1
            waiting += row[0]
            samples += row[1]
            time.sleep(0.005)
    result.put((waiting, samples, rounds))


def run(jobs: list[tuple[str, int]], seconds: float, locked: bool) -> tuple[dict, float]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(jobs) + 1)
    counts, waits, stop = context.Queue(), context.Queue(), context.Event()
    procs = [
        context.Process(target=writer, args=(job, seconds, locked, start, counts)) for job in jobs
    ]
    for proc in procs:
        proc.start()
    sampler = context.Process(target=sample_waits, args=(stop, waits))
    start.wait()
    sampler.start()
    done: dict[str, float] = {}
    for _ in procs:
        kind, count = counts.get(timeout=seconds + 120)
        done[kind] = done.get(kind, 0) + count / seconds
    stop.set()
    waiting, samples, rounds = waits.get(timeout=30)
    for proc in [*procs, sampler]:
        proc.join(30)
    return done, (waiting / samples if samples else 0.0)


LAYOUTS = {
    "1 progress": lambda tasks, logs: tasks[:1],
    "2 progress": lambda tasks, logs: tasks[:2],
    "progress + logs": lambda tasks, logs: [tasks[0], logs],
}


def main(args) -> None:
    SCRATCH.make()
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        tasks, logs = pool.apply(make_jobs, (2,))
    print(f"PostgreSQL, writers through the services, {args.seconds:g} s a run; "
          f"median of {args.rounds} rounds, the modes taking turns")  # fmt: skip
    runs: dict[tuple[str, bool], list[tuple[dict, float]]] = {}
    for _ in range(args.rounds):
        for layout, jobs in LAYOUTS.items():
            for locked in (False, True):
                runs.setdefault((layout, locked), []).append(
                    run(jobs(tasks, logs), args.seconds, locked)
                )
    print(f"{'writers':<16} {'event lock':<10} {'progress/s':>10} {'lines/s':>8} {'waiting':>8}")
    rows = {}
    for (layout, locked), results in runs.items():
        progress = statistics.median(done.get("progress", 0) for done, _ in results)
        lines = statistics.median(done.get("logs", 0) for done, _ in results)
        rows[layout, locked] = progress
        waiting = max(share for _, share in results)
        each = " ".join(f"{done.get('progress', 0):.0f}" for done, _ in results)
        name = "as is" if locked else "taken out"
        print(f"{layout:<16} {name:<10} {progress:10.1f} {lines:8.0f} {waiting:7.1%}"
              f"   (progress/s each round: {each})")  # fmt: skip
    for layout in LAYOUTS:
        print(f"{layout}: progress/s with the lock {rows[layout, True] / rows[layout, False]:.2f}x"
              " the same without it")  # fmt: skip
    print(f"two progress writers against one, with the lock: "
          f"{rows['2 progress', True] / rows['1 progress', True]:.2f}x; without: "
          f"{rows['2 progress', False] / rows['1 progress', False]:.2f}x")  # fmt: skip
    SCRATCH.drop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args())

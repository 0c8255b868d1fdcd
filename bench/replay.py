"""replay_events --speed 0: events a second, against storing the same rows bare.

    .venv/bin/python bench/replay.py [--events 5000]
    DATABASE=postgres .venv/bin/python bench/replay.py
    REPLAY_DATABASE=my_scratch DATABASE=postgres .venv/bin/python bench/replay.py

An event file of one session, ten tasks and progress reports on them is
replayed into a fresh database (a SQLite file, or a scratch PostgreSQL
database `switchboard_replay`, or REPLAY_DATABASE) by the command, in a process of its own:
in batches of 500 lines a transaction (and, with --per-line, committing
every line on its own, as before batching). Baseline in the same run: the same number of event rows
inserted with one executemany in one transaction (the least the job needs:
storing them).
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# The scratch database (dropped and made again each run): REPLAY_DATABASE names another.
PG_DB = os.environ.get("REPLAY_DATABASE", "switchboard_replay")


def database_url(postgres: bool, scratch: Path) -> str:
    if not postgres:
        db = scratch / "replay.sqlite3"
        db.unlink(missing_ok=True)
        return f"sqlite:///{db}"
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DB}")
    return f"postgres://postgres@127.0.0.1:5432/{PG_DB}"


def write_file(path: Path, events: int) -> None:
    with path.open("w") as out:
        out.write(json.dumps({"event": "session.update", "session": "bench-replay",
                              "data": {"name": "replayed", "status": "running"}}) + "\n")  # fmt: skip
        for n in range(10):
            out.write(json.dumps({"event": "task.update", "session": "bench-replay",
                                  "task": f"t{n}", "data": {"name": f"t{n}",
                                                            "status": "running"}}) + "\n")  # fmt: skip
        for n in range(events - 11):
            out.write(json.dumps({"event": "progress.update", "session": "bench-replay",
                                  "task": f"t{n % 10}",
                                  "data": {"progress": n % 100, "message": f"step {n}"}}) + "\n")  # fmt: skip


def replay(url: str, path: str, batch: int, result) -> None:
    os.environ.update({"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings"})
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from sessions_app import eventfiles

    eventfiles.BATCH_LINES = batch
    started, cpu = time.perf_counter(), time.process_time()
    with open(os.devnull, "w") as quiet:
        call_command("replay_events", path, speed=0, stdout=quiet, stderr=quiet)
    result.put((time.perf_counter() - started, time.process_time() - cpu))


def bare(url: str, events: int, result) -> None:
    """The same number of event rows, one executemany, one transaction."""
    os.environ.update({"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection, transaction
    from django.utils import timezone

    rows = [
        (
            "progress.update",
            json.dumps({"progress": n % 100, "message": f"step {n}"}),
            timezone.now(),
        )
        for n in range(events)
    ]
    started, cpu = time.perf_counter(), time.process_time()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO sessions_app_event (kind, data, ts) VALUES (%s, %s, %s)", rows
        )
    result.put((time.perf_counter() - started, time.process_time() - cpu))


def timed(target, *args) -> tuple[float, float]:
    """Wall-clock and CPU seconds (of the process doing it) of `target`."""
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    proc = context.Process(target=target, args=(*args, result))
    proc.start()
    seconds = result.get(timeout=1800)
    proc.join(30)
    return seconds


def main(args) -> None:
    postgres = os.environ.get("DATABASE", "sqlite") == "postgres"
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        path = scratch / "events.jsonl"
        write_file(path, args.events)
        rows = []
        modes = [("a commit a line", 1)] if args.per_line else []
        for name, batch in (*modes, ("batched", 500)):
            url = database_url(postgres, scratch)
            env = {**os.environ, "DATABASE_URL": url}
            env.pop("REDIS_URL", None)
            subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT,
                           env=env, check=True)  # fmt: skip
            rows.append((name, timed(replay, url, str(path), batch)))
        base, _ = timed(bare, url, args.events)
    print(
        f"{'PostgreSQL' if postgres else 'SQLite'}: replay_events --speed 0, {args.events} events"
    )
    print(f"{'bare insert of the rows':<24} {base:7.2f} s {args.events / base:9.0f} events/s")
    for name, (seconds, cpu) in rows:
        print(f"{name:<24} {seconds:7.2f} s {args.events / seconds:9.0f} events/s"
              f"   {base / seconds:.3f}x the bare insert"
              f"   {cpu * 1000 / args.events:.3f} CPU s per 1,000 events")  # fmt: skip
    if postgres:
        import psycopg

        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument(
        "--per-line", action="store_true", help="also replay committing every line on its own"
    )
    main(parser.parse_args())

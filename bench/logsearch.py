"""Log queries on one session with a million lines (PostgreSQL).

    .venv/bin/python bench/logsearch.py [--lines 1000000]

A scratch database `switchboard_logsearch` is made afresh and filled with
COPY: access-log-like lines, 1 in 10,000 with a rare phrase ("checksum
mismatch"), a third with a common word ("GET"). Each query runs in-process
through Django's test client (the full view: token, validation, the query,
building the answer), 7 times after 2 warm-ups; the median is reported.

Baseline in the same run: psycopg alone running the same SQL the view runs
(the least the job needs: the rows, as JSON text), so the ratio is what the
framework and the answer cost on top of the database's own work. Keyword
queries are measured twice: with the trigram index and after dropping it.
"""

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "switchboard_logsearch"
URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
RARE, COMMON, ABSENT = "checksum mismatch", "GET", "zebrafish"


def fresh_database() -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    env = {**os.environ, "DATABASE_URL": URL}
    env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )


def fill(session_id: int, lines: int) -> None:
    rng = random.Random(7)
    paths = [f"/api/items/{n}" for n in range(500)] + ["/healthz", "/login", "/static/app.js"]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    buffer = io.StringIO()
    for n in range(lines):
        ts = (start + timedelta(milliseconds=n * 10)).isoformat()
        level = 40 if n % 97 == 0 else (30 if n % 13 == 0 else 20)
        method = "GET" if n % 3 == 0 else rng.choice(["POST", "PUT", "DELETE"])
        message = (
            f"{method} {rng.choice(paths)} {rng.choice([200, 201, 404, 500])} "
            f"{rng.randint(1, 900)}ms user={rng.randint(1, 5000)} req={n:08x}"
        )
        if n % 10000 == 5000:
            message += f" {RARE} on block {n}"
        buffer.write(f"{session_id}\t{ts}\t{level}\tapp.http\t{message}\t0\n")
    buffer.seek(0)
    with psycopg.connect(URL, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY logs_app_logentry (session_id, ts, level, logger, message, seq) FROM STDIN"
        ) as copy:
            while chunk := buffer.read(1 << 20):
                copy.write(chunk)
        conn.execute("ANALYZE logs_app_logentry")


def median_ms(run, repeat: int = 7) -> float:
    for _ in range(2):
        run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(lines: int) -> None:
    fresh_database()
    os.environ["DATABASE_URL"] = URL
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
    os.environ["SWITCHBOARD_TOKEN_RATE"] = "0"
    os.environ["SWITCHBOARD_ADDRESS_RATE"] = "0"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from live.models import ApiToken
    from logs_app.models import LogEntry
    from sessions_app.models import Session

    user = User.objects.create(username="bench", is_superuser=True, is_staff=True)
    token = ApiToken.issue(user)[1]
    session = Session.objects.create(name="a million lines", owner=user)
    started = time.perf_counter()
    fill(session.pk, lines)
    print(f"filled {lines:,} lines in {time.perf_counter() - started:.1f} s")
    http = Client(headers={"Authorization": f"Bearer {token}"})
    url = f"/api/v1/sessions/{session.pk}/logs"
    connection.ensure_connection()

    def view(params: dict):
        def run():
            response = http.get(url, params)
            assert response.status_code == 200, response.content
            return response

        return run

    def sql_of(params: dict) -> str:
        from logs_app import services

        log_filter = services.LogFilter(
            level=services.parse_level(params.get("level")), q=params.get("q", "")
        )
        queryset = log_filter.apply(LogEntry.objects.filter(session_id=session.pk))
        rows = queryset.order_by("-id")[: int(params.get("limit", 100)) + 1]
        sql, args = rows.query.sql_with_params()
        with connection.cursor() as cursor:
            return cursor.mogrify(sql, args)

    def bare(params: dict):
        sql = sql_of(params)
        conn = psycopg.connect(URL, autocommit=True)

        def run():
            rows = conn.execute(f"SELECT json_agg(t) FROM ({sql}) t").fetchone()[0]
            return json.dumps(rows)

        return run

    cases = [
        ("newest 100", {}),
        ("newest 100, level ERROR", {"level": "ERROR"}),
        (f"keyword, rare ({RARE!r})", {"q": RARE}),
        (f"keyword, common ({COMMON!r})", {"q": COMMON}),
        (f"keyword, absent ({ABSENT!r})", {"q": ABSENT}),
        ("a page of 10,000", {"limit": 10000}),
    ]
    counts = {name: len(view(params)().json()["entries"]) for name, params in cases}
    print(f"\n{'query':34} {'lines':>6} {'bare SQL':>10} {'the view':>10} {'ratio':>7}")
    results = {}
    for name, params in cases:
        base, ours = median_ms(bare(params)), median_ms(view(params))
        results[name] = ours
        print(f"{name:34} {counts[name]:6} {base:8.1f}ms {ours:8.1f}ms {ours / base:6.1f}x")
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS log_message_trgm_idx")
    print("\nwithout the trigram index:")
    for name, params in cases[2:5]:
        ours = median_ms(view(params), repeat=3)
        print(f"{name:34} {'':6} {'':10} {ours:8.1f}ms  (with it {results[name]:.1f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    main(parser.parse_args().lines)

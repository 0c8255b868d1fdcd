"""Log ingest: lines a second posted in batches vs one line per request.

    .venv/bin/python bench/ingest.py [--lines 5000] [--batch 500] [--rounds 5]

Runs in-process through Django's test client (the full view, validation,
transaction and event path; no network), on a fresh database: SQLite unless
DATABASE_URL is set. The baseline, measured in the same run, is one line per
request, which is what a naive worker does.

Then the cost of log alert rules on the same batched ingest, in the same run,
rounds taken in turn (the median of each): no rules, 10 rules that match no
line (patterns, loggers, levels: the patterns run on every line), and the
same 10 plus one that matches one line in 100 (it fires once, then counts
during its quiet period: a locked state row written per batch).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.mkdtemp()}/ingest.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from live.models import ApiToken, Event  # noqa: E402


def main(lines: int, batch: int, rounds: int) -> None:
    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username="ingest", is_superuser=True, is_staff=True)
    token = ApiToken.issue(user)[1]
    http = Client(headers={"Authorization": f"Bearer {token}"})
    session = http.post("/api/v1/sessions", {"name": "ingest"}, content_type="application/json")
    url = f"/api/v1/sessions/{session.json()['id']}/logs"

    def post(entries):
        response = http.post(url, json.dumps({"entries": entries}), content_type="application/json")
        assert response.status_code == 201, response.content

    single = max(lines // 10, 100)
    events_before = Event.objects.count()
    started = time.perf_counter()
    for n in range(single):
        post([{"message": f"single {n}", "level": "INFO", "uid": f"s{n}"}])
    one_at_a_time = single / (time.perf_counter() - started)
    events_single = Event.objects.count() - events_before

    events_before = Event.objects.count()
    started = time.perf_counter()
    for start in range(0, lines, batch):
        post(
            [
                {"message": f"batched {n} " + "x" * 80, "level": "INFO", "uid": f"b{n}"}
                for n in range(start, min(lines, start + batch))
            ]
        )
    batched = lines / (time.perf_counter() - started)
    events_batched = Event.objects.count() - events_before

    print(f"database               {django.db.connection.vendor}")
    print(
        f"one line per request   {one_at_a_time:9.0f} lines/s  ({single} lines, {events_single} events)"
    )
    print(
        f"{batch} lines per request {batched:9.0f} lines/s  ({lines} lines, {events_batched} events)"
    )
    print(f"ratio to baseline      {batched / one_at_a_time:9.1f} x")
    rules_bench(post, lines, batch, rounds)


RULES = [
    {"pattern": r"timeout after \d+ s"},
    {"pattern": r"connection (refused|reset) by peer"},
    {"pattern": r"(?i)out of memory"},
    {"pattern": r"^Traceback \(most recent call last\)"},
    {"pattern": r"disk (full|quota)", "level": 30},
    {"level": 50},
    {"logger": "app.db", "pattern": "deadlock"},
    {"logger": "payments"},
    {"pattern": r"\bpanic\b", "level": 40},
    {"pattern": r"status=5\d\d"},
]


def rules_bench(post, lines: int, batch: int, rounds: int) -> None:
    import statistics

    from logs_app.models import AlertRule

    quiet = [AlertRule.objects.create(name=f"quiet {n}", **rule) for n, rule in enumerate(RULES)]
    hit = AlertRule.objects.create(name="hit", pattern=r"status=42\b", quiet_seconds=3600)
    cases = {
        "no rules": [],
        "10 rules, none match": quiet,
        "10 rules + 1 matching": [*quiet, hit],
    }
    taken: dict[str, list[float]] = {name: [] for name in cases}
    serial = 0
    for _ in range(rounds):
        for name, active in cases.items():
            AlertRule.objects.update(active=False)
            AlertRule.objects.filter(pk__in=[rule.pk for rule in active]).update(active=True)
            AlertRule.objects.first().save()  # the signal: this process reloads now
            started = time.perf_counter()
            for start in range(0, lines, batch):
                post(
                    [
                        {
                            "message": f"request {n} done status={42 if n % 100 == 0 else 200} "
                            + "x" * 60,
                            "level": "INFO",
                            "logger": "app.web",
                            "uid": f"r{serial}-{n}",
                        }
                        for n in range(start, min(lines, start + batch))
                    ]
                )
            taken[name].append(lines / (time.perf_counter() - started))
            serial += 1
    alerts = Event.objects.filter(kind="system.alert", data__event="log.rule").count()
    # The matching alone, on one batch of stored lines (what check() adds
    # before any state is written): microseconds a line.
    from logs_app.models import LogEntry
    from logs_app.rules import RuleSet, load

    AlertRule.objects.update(active=True)
    entries = list(LogEntry.objects.order_by("-id")[:batch])
    session_id = entries[0].session_id
    matching = {}
    for name, keep in (("10 rules, none match", quiet), ("10 rules + 1 matching", [*quiet, hit])):
        ids = {rule.pk for rule in keep}
        rules = RuleSet([rule for rule in load() if rule.id in ids])
        started = time.perf_counter()
        for _ in range(20):
            found = rules.match(session_id, entries)
        matching[name] = ((time.perf_counter() - started) / 20 / len(entries) * 1e6, found)
    base = statistics.median(taken["no rules"])
    print(f"alert rules, {rounds} rounds of {lines} lines in batches of {batch} (median):")
    for name, rates in taken.items():
        rate = statistics.median(rates)
        cost = ""
        if name in matching:
            per_line, found = matching[name]
            hits = sum(len(lines) for lines in found.values())
            cost = f"; matching {per_line:.2f} µs a line, {hits} of {len(entries)} matched"
        print(f"  {name:<22} {rate:9.0f} lines/s  ({rate / base:.3f}x no rules{cost})")
    print(f"  alerts recorded        {alerts}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    main(options.lines, options.batch, options.rounds)

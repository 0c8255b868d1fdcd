"""Log ingest: lines a second posted in batches vs one line per request.

    .venv/bin/python bench/ingest.py [--lines 5000] [--batch 500]

Runs in-process through Django's test client (the full view, validation,
transaction and event path; no network), on a fresh database: SQLite unless
DATABASE_URL is set. The baseline, measured in the same run, is one line per
request, which is what a naive worker does.
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


def main(lines: int, batch: int) -> None:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    options = parser.parse_args()
    main(options.lines, options.batch)

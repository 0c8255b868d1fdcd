"""A scratch PostgreSQL database for benches that call the services directly."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Scratch:
    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"postgres://postgres@127.0.0.1:5432/{name}"

    def environment(self) -> dict:
        env = {**os.environ, "DATABASE_URL": self.url, "DJANGO_SETTINGS_MODULE": "project.settings"}
        env.pop("REDIS_URL", None)
        return env

    def setup_django(self) -> None:
        """Django set up on this database, in the calling process."""
        os.environ.update(self.environment())
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()

    def make(self) -> None:
        """Made afresh and migrated."""
        self.drop()
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.name}")
        command = [sys.executable, "manage.py", "migrate", "-v", "0"]
        subprocess.run(command, cwd=ROOT, env=self.environment(), check=True)

    def sample_waits(self, app: str, stop, seen) -> None:
        """Count the busy backends of `app` (their application_name) by
        (wait_event_type, wait_event) every 5 ms until `stop` is set; ("", "")
        is one busy on CPU, ("busy", "") all of them, ("samples", "") the count."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT coalesce(wait_event_type, ''), coalesce(wait_event, ''), count(*)"
                    " FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
                    " AND state = 'active' GROUP BY 1, 2",
                    [self.name, app],
                ).fetchall()
                for wait_type, event, count in rows:
                    seen[wait_type, event] += count
                    seen["busy", ""] += count
                seen["samples", ""] += 1
                time.sleep(0.005)

    def drop(self) -> None:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

"""A scratch PostgreSQL database for benches that call the services directly."""

import os
import subprocess
import sys
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

    def drop(self) -> None:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

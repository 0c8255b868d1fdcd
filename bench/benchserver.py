"""A daphne server on a fresh database, with a staff user and a token, for the benches."""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PASSWORD = "bench-pass"


class BenchServer:
    """`with BenchServer(port) as server:` a running server; `server.api(...)` calls it.

    SQLite in a temporary folder unless DATABASE_URL is set (then that database,
    which should be empty); the in-memory layer unless REDIS_URL is set.
    """

    def __init__(self, port: int, **env: str) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        tmp = tempfile.mkdtemp(prefix="switchboard-bench-")
        self.env = {**os.environ, **env}
        self.env.setdefault("DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3")
        self.process: subprocess.Popen | None = None

    def manage(self, *argv: str) -> str:
        return subprocess.run(
            [PY, "manage.py", *argv],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def __enter__(self) -> "BenchServer":
        self.manage("migrate", "-v0")
        self.token = self.manage("create_token", "bench", "--create-user").strip().splitlines()[-1]
        subprocess.run(
            [PY, "-c", "import django,os;os.environ['DJANGO_SETTINGS_MODULE']='project.settings';"
             "django.setup();from django.contrib.auth.models import User;u=User.objects.get(username='bench');"
             f"u.is_staff=u.is_superuser=True;u.set_password({PASSWORD!r});u.save()"],
            cwd=ROOT, env=self.env, check=True,
        )  # fmt: skip
        self.process = subprocess.Popen(
            [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "project.asgi:application"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{self.base}/api/v1/openapi.json", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("daphne did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)

    def api(self, method: str, path: str, body=None) -> dict:
        request = urllib.request.Request(
            f"{self.base}/api/v1/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

"""A daphne server on a fresh database, with a staff user and a token, for the benches."""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
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

    def __init__(self, port: int, processes: int = 1, cpus: str | None = None, **env: str) -> None:
        self.port = port
        self.ports = [port + i for i in range(processes)]
        self.cpus = cpus
        self.base = f"http://127.0.0.1:{port}"
        tmp = tempfile.mkdtemp(prefix="switchboard-bench-")
        self.env = {**os.environ, **env}
        self.env.setdefault("DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3")
        # Throughput is measured, not capped: request rates off.
        self.env.setdefault("SWITCHBOARD_TOKEN_RATE", "0")
        self.env.setdefault("SWITCHBOARD_ADDRESS_RATE", "0")
        self.process: subprocess.Popen | None = None
        self.processes: list[subprocess.Popen] = []

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
        self.processes = [
            start_daphne(port, "project.asgi:application", self.env, self.cpus)
            for port in self.ports
        ]
        self.process = self.processes[0]
        for port in self.ports:
            wait_until_up(f"http://127.0.0.1:{port}/api/v1/openapi.json")
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(10)

    def worker_token(self) -> str:
        """A token of a user who is neither staff nor superuser and holds
        `view_session` and `change_session`, as a deployment's workers do: the
        API checks its permissions on every request, which a superuser skips."""
        code = (
            "import django,os;os.environ['DJANGO_SETTINGS_MODULE']='project.settings';"
            "django.setup();from django.contrib.auth.models import Permission,User;"
            "from live.models import ApiToken;"
            "u=User.objects.create_user('bench-worker');"
            "u.user_permissions.set(Permission.objects.filter("
            "content_type__app_label='sessions_app',"
            "codename__in=['view_session','change_session']));"
            "print(ApiToken.issue(u)[1])"
        )
        out = subprocess.run(
            [PY, "-c", code], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        )
        return out.stdout.strip().splitlines()[-1]

    def api(self, method: str, path: str, body=None, token: str | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.base}/api/v1/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def start_daphne(port: int, app: str, env: dict, cpus: str | None = None) -> subprocess.Popen:
    """daphne on 127.0.0.1:port, pinned to `cpus` (taskset) when given."""
    pin = ["taskset", "-c", cpus] if cpus else []
    return subprocess.Popen(
        [*pin, PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_until_up(url: str) -> None:
    for _ in range(150):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


class BareServer:
    """bench/bare.py (a bare ASGI broadcast) on the same daphne."""

    def __init__(self, port: int, cpus: str | None = None) -> None:
        self.port = port
        self.cpus = cpus

    def __enter__(self) -> "BareServer":
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = start_daphne(self.port, "bench.bare:application", env, self.cpus)
        wait_until_up(f"http://127.0.0.1:{self.port}/")
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)

"""The Celery part of the demo (`manage.py demo --celery`): a worker that
needs no service, on Kombu's filesystem transport (a folder as the broker),
or on Redis when REDIS_URL is set, its tasks reported by
switchboard_client.celery.

The worker loads this module (`celery -A operations.celery_demo worker`);
`CeleryDemo` starts it and sends it a canvas now and then.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

from celery import Celery, chain
from switchboard_client.celery import connect, progress

ROOT = Path(__file__).resolve().parent.parent
FOLDER_ENV = "SWITCHBOARD_DEMO_BROKER_FOLDER"


def make_app(folder: str | None = None) -> Celery:
    folder = folder or os.environ.get(FOLDER_ENV) or str(ROOT / ".demo-celery")
    app = Celery("switchboard-demo")
    redis = os.environ.get("REDIS_URL")
    if redis:
        app.conf.broker_url = redis
        # A queue of this demo's own on a shared Redis.
        app.conf.task_default_queue = f"switchboard-demo-{zlib.crc32(folder.encode())}"
    else:
        Path(folder).mkdir(parents=True, exist_ok=True)
        app.conf.broker_url = "filesystem://"
        app.conf.broker_transport_options = {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": str(Path(folder) / "control"),  # else ./control
        }
    app.conf.broker_connection_retry_on_startup = True
    return app


app = make_app()
if os.environ.get("SWITCHBOARD_URL") and os.environ.get("SWITCHBOARD_TOKEN"):
    connect(app, stale_after=30)

log = logging.getLogger("demo.celery")


@app.task(name="demo.fetch", bind=True, max_retries=2)
def fetch(self, source: str) -> dict:
    log.warning("fetching %s", source)
    if self.request.retries == 0 and random.random() < 0.5:
        raise self.retry(exc=ConnectionError(f"{source} did not answer"), countdown=1)
    return {"source": source, "rows": random.randint(100, 999)}


@app.task(name="demo.transform")
def transform(fetched: dict) -> dict:
    for step in range(1, 6):
        time.sleep(0.4)
        progress(step * 20, message=f"step {step} of 5")
    log.warning("transformed %d rows", fetched["rows"])
    return {**fetched, "clean": True}


@app.task(name="demo.load")
def load(cleaned: dict) -> str:
    if random.random() < 0.2:
        raise RuntimeError(f"the warehouse refused {cleaned['source']}")
    return f"loaded {cleaned['rows']} rows from {cleaned['source']}"


def send_some(sender: Celery, n: int) -> str:
    """One canvas: fetch, transform, load (a session of three tasks)."""
    source = f"feed-{n}"
    steps = chain(
        sender.signature("demo.fetch", (source,)),
        sender.signature("demo.transform"),
        sender.signature("demo.load"),
    )
    return steps.apply_async().parent.parent.id


class CeleryDemo:
    """A worker process on the demo's broker, and a thread sending it work."""

    def __init__(self, base_url: str, token: str, folder: str, every: float = 15.0) -> None:
        self.folder = folder
        self.every = every
        self.sender = make_app(folder)
        env = {**os.environ, "SWITCHBOARD_URL": base_url, "SWITCHBOARD_TOKEN": token}
        env[FOLDER_ENV] = folder
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "client"), str(ROOT)])
        env.pop("DJANGO_SETTINGS_MODULE", None)  # a worker, not this project's process
        self.env = env
        self.process: subprocess.Popen | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "operations.celery_demo", "worker",
             "--pool=solo", "-l", "warning", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        threading.Thread(target=self._send, name="demo-celery", daemon=True).start()

    def _send(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            send_some(self.sender, n)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

"""The Celery app a test worker loads (`celery -A tests.celery_tasks worker`):
its broker and queue from the environment, connected to Switchboard."""

import logging
import os
import time

from celery import Celery
from switchboard_client import celery as switchboard
from switchboard_client.celery import cancel_requested, connect, progress

app = Celery("sbtest", broker=os.environ.get("CELERY_BROKER", "redis://127.0.0.1:6379/9"))
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "sbtest")
app.conf.broker_connection_retry_on_startup = True
connect(
    app,
    stale_after=int(os.environ.get("SB_STALE_AFTER", "60")),
    poll=0.3,
    session=getattr(switchboard, os.environ.get("SB_SESSION", ""), None),  # per_worker...
    record_arguments={"all": True, "args": "args", "none": False}[
        os.environ.get("SB_RECORD", "all")
    ],
)

log = logging.getLogger(__name__)


@app.task(name="sbtest.work")
def work(rows: int = 3):
    for n in range(rows):
        progress(100 * (n + 1) / rows, message=f"{n + 1} of {rows} rows")
        log.warning("row %d done", n)
    return {"rows": rows}


@app.task(name="sbtest.broken")
def broken():
    raise ValueError("bad input")


@app.task(name="sbtest.flaky", bind=True, max_retries=3)
def flaky(self):
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("try later"), countdown=0.5)
    return "fine"


@app.task(name="sbtest.flag")
def flag(path: str, word: str = "plain"):
    """Fails the first time (no flag file yet: it makes one), then succeeds."""
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError("first time")
    return {"word": word}


@app.task(name="sbtest.add")
def add(x, y=1):
    return x + y


@app.task(name="sbtest.odd")
def odd():
    return object()


@app.task(name="sbtest.sleepy")
def sleepy(seconds: float = 60):
    end = time.monotonic() + seconds
    log.warning("sleeping")
    while time.monotonic() < end:
        if cancel_requested():
            return "stopped"
        time.sleep(0.1)
    return "slept"

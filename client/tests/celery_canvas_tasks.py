"""The Celery app test_celery_canvas's worker loads (`celery -A
tests.celery_canvas_tasks worker`): broker, result backend (a chord needs
one) and queue from the environment, connected to Switchboard."""

import os

from celery import Celery
from switchboard_client.celery import connect

BROKER = os.environ.get("CELERY_BROKER", "redis://127.0.0.1:6379/9")
app = Celery("sbcanvas", broker=BROKER, backend=os.environ.get("CELERY_BACKEND", BROKER))
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "sbcanvas")
app.conf.broker_connection_retry_on_startup = True
connect(app, poll=0.3)


@app.task(name="sbcanvas.square")
def square(x):
    return x * x


@app.task(name="sbcanvas.total")
def total(values):
    return sum(values)

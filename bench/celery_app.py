"""The Celery app bench/celery_overhead.py's workers load (`celery -A celery_app`).

From the environment: BENCH_BROKER, BENCH_QUEUE, BENCH_TASKS (how many tasks
the round runs), BENCH_OUT (where the timings go), BENCH_SPIN (loop turns of
the `cpu` task), and BENCH_CONNECT=1 for `connect(app)` (then
SWITCHBOARD_URL and SWITCHBOARD_TOKEN). The worker's own signal handlers
take the time of each task from before its start to after its end; they are
connected around `connect(app)`'s (before its task_prerun, after its
task_postrun, in the order Celery calls them), so a task's time includes
what Switchboard's handlers cost it. Once BENCH_TASKS have run, the times go
to BENCH_OUT as JSON, with the CPU time the worker process (all its
threads, Switchboard's included) spent from the first start to the last end.
"""

import json
import os
import time

from celery import Celery, signals

app = Celery("sbbench", broker=os.environ["BENCH_BROKER"])
app.conf.task_default_queue = os.environ["BENCH_QUEUE"]
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_hijack_root_logger = False

TASKS = int(os.environ["BENCH_TASKS"])
SPIN = int(os.environ.get("BENCH_SPIN", "0"))
starts: dict[str, float] = {}
spans: list[tuple[float, float]] = []
cpu_at_start: list[float] = []  # the process's CPU time (all its threads) at the first start


@signals.task_prerun.connect(weak=False)
def _started(task_id=None, **_) -> None:
    if not cpu_at_start:
        cpu_at_start.append(time.process_time())
    starts[task_id] = time.perf_counter()


if os.environ.get("BENCH_CONNECT") == "1":
    from switchboard_client.celery import connect

    connect(app)


@signals.task_postrun.connect(weak=False)
def _ended(task_id=None, **_) -> None:
    spans.append((starts.pop(task_id), time.perf_counter()))
    if len(spans) == TASKS:
        with open(os.environ["BENCH_OUT"] + ".part", "w") as out:
            json.dump({"spans": spans, "cpu": time.process_time() - cpu_at_start[0]}, out)
        os.replace(os.environ["BENCH_OUT"] + ".part", os.environ["BENCH_OUT"])


@app.task(name="bench.noop")
def noop():
    return None


@app.task(name="bench.cpu")
def cpu():
    """The same amount of work in every round (BENCH_SPIN turns, about 5 ms)."""
    total = 0
    for n in range(SPIN):
        total += n * n
    return total & 0xFF

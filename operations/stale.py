"""Lost workers: a running task with no report for its `stale_after` fails.

Every server process looks once a second (`SWITCHBOARD_STALE_CHECK_SECONDS`)
for running tasks whose row has not changed for their limit (`stale_after`,
or `SWITCHBOARD_STALE_AFTER`, 600 s by default, 0 for never). A report is any
write to the task or its logs: the row's `updated_at`, its newest event
(output chunks, progress), and whatever the sources registered here say (the
logs app registers the task's newest log line). A task silent for longer fails
through the services (`services.fail_lost`), which checks again under the
task's lock, so with several processes it happens once. No cron is needed.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from live import stats
from live.models import Event
from operations.sweeper import Sweeper
from sessions_app import services
from sessions_app.models import Status, Task

log = logging.getLogger(__name__)

# Other places a worker's report lands: each gives the newest time for a task.
_sources: list[Callable[[Task], datetime | None]] = []


def register_source(source: Callable[[Task], datetime | None]) -> None:
    _sources.append(source)


def reports(found: QuerySet) -> QuerySet:
    """The times of the reports among events, newest first: an alert is the
    server's own word about a task or session, not a report from its worker."""
    return found.exclude(kind="system.alert").order_by("-id").values_list("ts", flat=True)


def last_report(task: Task) -> datetime:
    times = [task.updated_at, task.started_at or task.updated_at]
    newest = reports(Event.objects.filter(task_id=task.pk))
    times.append(newest.first() or task.updated_at)
    for source in _sources:
        found = source(task)
        if found is not None:
            times.append(found)
    return max(times)


def sweep(now: datetime | None = None) -> list[int]:
    """Fail the running tasks that have gone silent; their ids."""
    default = settings.SWITCHBOARD["STALE_AFTER"]
    now = now or timezone.now()
    quiet = Task.objects.filter(status=Status.RUNNING, updated_at__lt=now - timedelta(seconds=1))
    if not default:
        quiet = quiet.filter(stale_after__isnull=False)
    failed = []
    for task in quiet.only("id", "session_id", "updated_at", "started_at", "stale_after"):
        limit = task.stale_after or default
        if (now - task.updated_at).total_seconds() < limit:
            continue
        if (now - last_report(task)).total_seconds() < limit:
            continue
        if services.fail_lost(task.pk, last_report, default):
            failed.append(task.pk)
            log.warning("task %s failed: no report for %s s", task.pk, limit)
    if failed:
        stats.live.found_stale(len(failed))
    return failed


# Started with the server (operations.apps).
start = Sweeper(
    "stale-task", lambda: sweep(), lambda: settings.SWITCHBOARD["STALE_CHECK_SECONDS"]
).start

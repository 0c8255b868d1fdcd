"""Sessions whose work is done end by themselves.

Every server process looks every couple of seconds for sessions, pending or
running, whose tasks have all ended (one at least) and for which nothing new
has arrived for `SWITCHBOARD_SESSION_SETTLE` seconds (30 by default; 0 turns
this off). "Nothing new" is the stale-task rule's, applied to each task of
the session (`stale.last_report`: its row, its events, its log lines), plus
the session's own row and newest event (a log line without a task, a change
of the session). The session then ends `failed` if a task failed, else
`cancelled` if one was cancelled, else `completed`, through
`sessions_app.settling`, which decides again under the session's lock: with
several processes it happens once, and never to a session that got a new
task meanwhile.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from live.models import Event
from operations import stale
from operations.sweeper import Sweeper
from sessions_app import settling
from sessions_app.models import TERMINAL, Session, Task

log = logging.getLogger(__name__)

# Seconds between looks: a session ends within its settle time and this.
CHECK_SECONDS = 2.0


def last_report(session: Session) -> datetime:
    """When anything last arrived for a session or any of its tasks."""
    times = [session.updated_at]
    newest = stale.reports(Event.objects.filter(session_id=session.pk))
    times.append(newest.first() or session.updated_at)
    tasks = session.tasks.only("id", "session_id", "updated_at", "started_at")
    times.extend(stale.last_report(task) for task in tasks)
    return max(times)


def sweep(now: datetime | None = None) -> list[int]:
    """End the sessions that have settled; their ids."""
    settle = settings.SWITCHBOARD["SESSION_SETTLE"]
    if not settle:
        return []
    now = now or timezone.now()
    since = now - timedelta(seconds=settle)
    unfinished = Task.objects.filter(session=OuterRef("pk")).exclude(status__in=TERMINAL)
    recent = Task.objects.filter(session=OuterRef("pk"), updated_at__gte=since)
    candidates = (
        Session.objects.filter(status__in=settling.OPEN, total_tasks__gt=0, updated_at__lt=since)
        .exclude(Exists(unfinished))
        .exclude(Exists(recent))
        .order_by("id")
        .values_list("pk", flat=True)
    )
    ended = []
    for session_id in candidates:
        session = settling.end_if_settled(session_id, last_report, settle)
        if session is not None:
            ended.append(session_id)
            log.info("session %s ended %s: its tasks had ended", session_id, session.status)
    return ended


# Started with the server (operations.apps).
start = Sweeper("settled-session", lambda: sweep(), lambda: CHECK_SECONDS).start

"""A session's life follows its work: once every task of it has ended and
nothing new has arrived for it for a while, the session ends too.

operations.settle looks for such sessions; this decides, under the
session's lock, so that with several server processes a session ends once,
and a task created meanwhile (which takes the same lock first) keeps it open.
"""

from collections.abc import Callable, Iterable
from datetime import datetime

from django.utils import timezone

from sessions_app import services
from sessions_app.models import TERMINAL, Session, Status
from sessions_app.recording import service_write

# Sessions that may settle: a paused one was held on purpose, and waits.
OPEN = (Status.PENDING, Status.RUNNING)


def end_status(statuses: Iterable[str]) -> Status:
    """What a session whose tasks ended thus ends as: failed wins over
    cancelled, which wins over completed."""
    found = set(statuses)
    if Status.FAILED in found:
        return Status.FAILED
    if Status.CANCELLED in found:
        return Status.CANCELLED
    return Status.COMPLETED


def end_if_settled(
    session_id: int, last_report: Callable[[Session], datetime], settle: float
) -> Session | None:
    """End a session whose tasks have all ended, if nothing arrived for it
    for `settle` seconds (`last_report`: the newest arrival); the session,
    or None when it does not (yet) settle. The session.update goes out with
    the change, as any update_session's."""
    with service_write():
        session = Session.objects.select_for_update(no_key=True).filter(pk=session_id).first()
        if session is None or session.status not in OPEN:
            return None
        # Every writer of a task locks its session first: what is read here
        # stays so until this transaction ends.
        statuses = list(session.tasks.values_list("status", flat=True))
        if not statuses or any(status not in TERMINAL for status in statuses):
            return None
        if (timezone.now() - last_report(session)).total_seconds() < settle:
            return None
        return services.update_session(session_id, status=end_status(statuses))

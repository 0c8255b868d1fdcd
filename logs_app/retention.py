"""A session's log kept within a size while it is still written
(`prune --keep-lines N`, or SWITCHBOARD_LOG_LINES_PER_SESSION).

Lines go oldest first, a batch at a time, each batch in a short transaction
of its own with the log.append events that carried its lines: no lock of
the session is taken, and its writers, who only add newer rows, never wait
on it. A reader of logs:<id> resuming from before what is kept is told to
reset (live.streams.kept_after); the HTTP pages simply end at the oldest
line kept.
"""

from django.db import transaction
from django.db.models import Count, Q

from live.models import Event, EventChannel
from logs_app.models import LogEntry
from logs_app.services import channel
from sessions_app.progress import ProgressBar


def trim_sessions(keep: int, *, batch: int, out, dry_run: bool = False) -> None:
    """Each session's log lines beyond its newest `keep`, oldest first."""
    over = (
        LogEntry.objects.values("session_id")
        .annotate(n=Count("id"))
        .filter(n__gt=keep)
        .order_by("session_id")
        .values_list("session_id", "n")
    )
    sessions = lines = 0
    for session_id, count in list(over):
        through = cut(session_id, keep)
        if through is None:
            continue
        if dry_run:
            lines += LogEntry.objects.filter(session_id=session_id, seq__lte=through).count()
        else:
            lines += trim(session_id, through, batch=batch, out=out, total=count - keep)
        sessions += 1
    verb = "Would trim" if dry_run else "Trimmed"
    out.write(f"{verb} {lines} log lines of {sessions} sessions to their newest {keep}.")


def cut(session_id: int, keep: int) -> int | None:
    """The seq through which a session's lines go: that of its newest line
    past the `keep` newest, so the lines of one log.append event go or stay
    together (the log keeps at most `keep`). Its newest event is always kept
    whole, so that its logs channel keeps a head (and `prev` links)."""
    lines = LogEntry.objects.filter(session_id=session_id)
    newest = lines.order_by("-seq").values_list("seq", flat=True).first()
    through = lines.order_by("-seq", "-id").values_list("seq", flat=True)[keep : keep + 1].first()
    if through is None or newest is None:
        return None
    if through >= newest:
        older = lines.filter(seq__lt=newest).order_by("-seq")
        through = older.values_list("seq", flat=True).first()
    return through


def trim(session_id: int, through: int, *, batch: int, out=None, total: int = 0) -> int:
    """Delete a session's lines with seq up to `through`, `batch` at a time,
    oldest first, each batch with the events that carried them; the number
    of lines deleted.

    A batch's events go in the same transaction as its lines, so a reader
    finds an event whole or finds it gone, never an event without its lines;
    gone, its channel's oldest kept placement names it in `prev`, and a
    reader resuming from before it resets."""
    name = channel(session_id)
    lines = LogEntry.objects.filter(session_id=session_id, seq__lte=through).order_by("seq", "id")
    bar = ProgressBar(out, f"trimming session {session_id}") if out and total > batch else None
    done = 0
    after, gone = Q(), 0  # where the last batch ended (keyset: never past its dead rows again)
    while rows := list(lines.filter(after).values_list("id", "seq")[:batch]):
        last, upto = rows[-1]
        with transaction.atomic():
            placed = EventChannel.objects.filter(channel=name, event_id__gt=gone)
            placed.filter(event_id__lte=upto).delete()
            Event.objects.filter(
                session_id=session_id, kind="log.append", id__gt=gone, id__lte=upto
            ).delete()
            LogEntry.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
        after, gone = Q(seq__gt=upto) | Q(seq=upto, id__gt=last), upto
        done += len(rows)
        if bar:
            bar(min(done, total), total)
    return done

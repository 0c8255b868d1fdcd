from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from live.models import Event, EventChannel, Retention
from operations.models import Delivery
from sessions_app import retention
from sessions_app.models import TERMINAL, Session
from sessions_app.progress import ProgressBar

# Rows one statement deletes at most (--batch-size): each delete is a short
# transaction of its own, so no lock, and no live writer's commit behind it
# in the write-ahead log, waits on a long one.
BATCH = 5000
BATCH_MAX = 100_000
# A cutoff further back than this is before any date a database stores.
MAX_DAYS = 365_000


class Command(BaseCommand):
    help = (
        "Delete old data: sessions that ended before the cutoff (with their tasks and "
        "log lines, deleted in batches), events recorded before it, and webhook "
        "deliveries made or given up before it; with --keep-lines (or "
        "SWITCHBOARD_LOG_LINES_PER_SESSION), also each session's oldest log lines beyond "
        "its newest N, running sessions included. Clients resuming from a pruned seq are "
        "told to reset."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=float,
            default=None,
            help="cutoff age in days (e.g. 30); may be left out with --keep-lines",
        )
        parser.add_argument(
            "--keep-lines",
            type=int,
            default=None,
            help="keep at most this many of each session's newest log lines, running "
            "sessions included (0: keep all; default SWITCHBOARD_LOG_LINES_PER_SESSION)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help=f"rows deleted per statement (1 to {BATCH_MAX:,}; default {BATCH:,})",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would go, delete nothing"
        )

    def handle(
        self,
        *args,
        older_than: float | None,
        keep_lines: int | None,
        batch_size: int | None,
        dry_run: bool,
        **options,
    ):
        if older_than is not None and not 0 <= older_than <= MAX_DAYS:
            raise CommandError(f"--older-than must be between 0 and {MAX_DAYS:,} days")
        if keep_lines is None:
            keep_lines = settings.SWITCHBOARD["LOG_LINES_PER_SESSION"]
        elif keep_lines < 0:
            raise CommandError("--keep-lines must be 0 (keep all) or more lines")
        if batch_size is None:
            batch_size = BATCH
        elif not 1 <= batch_size <= BATCH_MAX:
            raise CommandError(f"--batch-size must be between 1 and {BATCH_MAX:,}")
        if older_than is None and not keep_lines:
            raise CommandError("--older-than is required (unless --keep-lines is given)")
        self.batch = batch_size
        if older_than is not None:
            self._prune_old(timezone.now() - timedelta(days=older_than), dry_run)
        if keep_lines:
            for trim in retention.trimmers():
                trim(keep_lines, batch=self.batch, out=self.stdout, dry_run=dry_run)

    def _prune_old(self, cutoff, dry_run: bool) -> None:
        sessions = Session.objects.filter(status__in=TERMINAL, finished_at__lt=cutoff)
        last_event = (
            Event.objects.filter(ts__lt=cutoff).order_by("-id").values_list("id", flat=True).first()
        )
        events = Event.objects.filter(id__lte=last_event or 0)
        # Pending deliveries stay, however old: they are alerts still to be sent.
        deliveries = Delivery.objects.filter(created_at__lt=cutoff).exclude(
            status=Delivery.State.PENDING
        )
        if dry_run:
            self.stdout.write(
                f"Would delete {sessions.count()} sessions and {events.count()} events "
                f"from before {cutoff:%Y-%m-%d %H:%M} UTC."
            )
            self.stdout.write(f"Would delete {deliveries.count()} webhook deliveries.")
            return
        deleted_sessions = 0
        for session in sessions.iterator():
            self._delete_lines(session)
            session.delete()
            deleted_sessions += 1
        deleted_events = 0
        if last_event:
            total = events.count()
            bar = ProgressBar(self.stdout, "pruning events") if total > self.batch else None
            after = 0
            while True:
                # From the last batch on (keyset), not past its dead rows again.
                batch = events.filter(id__gt=after).order_by("id")
                ids = list(batch.values_list("id", flat=True)[: self.batch])
                if not ids:
                    break
                after = ids[-1]
                with transaction.atomic():
                    # Mark first: a client resuming from here on is told to reset.
                    mark, _ = Retention.objects.select_for_update().get_or_create(pk=1)
                    mark.pruned_through = max(mark.pruned_through, ids[-1])
                    mark.save()
                    # Placements first, by event: a batch of events is then
                    # two deletes bounded by it, not a read of every event row.
                    EventChannel.objects.filter(event_id__in=ids).delete()
                    Event.objects.filter(id__in=ids).delete()
                deleted_events += len(ids)
                if bar:
                    bar(deleted_events, total)
        self.stdout.write(f"Deleted {deleted_sessions} sessions and {deleted_events} events.")
        deleted_deliveries, _ = deliveries.delete()
        self.stdout.write(f"Deleted {deleted_deliveries} webhook deliveries.")

    def _delete_lines(self, session: Session) -> None:
        """A session's log lines go first, a batch at a time, each in a statement
        of its own: a session of a million lines is never one transaction that
        holds its locks, and a live writer's WAL, for minutes."""
        lines = session.log_entries.order_by("id").values_list("id", flat=True)
        total = session.log_entries.count()
        bar = (
            ProgressBar(self.stdout, f"pruning session {session.pk}")
            if total > self.batch
            else None
        )
        done = after = 0
        while ids := list(lines.filter(id__gt=after)[: self.batch]):
            session.log_entries.filter(pk__in=ids).delete()
            done += len(ids)
            after = ids[-1]
            if bar:
                bar(done, total)

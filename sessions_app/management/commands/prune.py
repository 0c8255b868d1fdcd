from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from live.models import Event, Retention
from operations.models import Delivery
from sessions_app.models import TERMINAL, Session
from sessions_app.progress import ProgressBar

BATCH = 5000


class Command(BaseCommand):
    help = (
        "Delete old data: sessions that ended before the cutoff (with their tasks and "
        "log lines, deleted in batches), events recorded before it, and webhook "
        "deliveries made or given up before it. Clients resuming from a pruned seq are "
        "told to reset."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", type=float, required=True, help="cutoff age in days (e.g. 30)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would go, delete nothing"
        )

    def handle(self, *args, older_than: float, dry_run: bool, **options):
        if older_than < 0:
            raise CommandError("--older-than must be 0 or more days")
        cutoff = timezone.now() - timedelta(days=older_than)
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
            bar = ProgressBar(self.stdout, "pruning events") if total > BATCH else None
            while True:
                ids = list(events.order_by("id").values_list("id", flat=True)[:BATCH])
                if not ids:
                    break
                with transaction.atomic():
                    # Mark first: a client resuming from here on is told to reset.
                    mark, _ = Retention.objects.select_for_update().get_or_create(pk=1)
                    mark.pruned_through = max(mark.pruned_through, ids[-1])
                    mark.save()
                    Event.objects.filter(id__in=ids).delete()
                deleted_events += len(ids)
                if bar:
                    bar(deleted_events, total)
        self.stdout.write(f"Deleted {deleted_sessions} sessions and {deleted_events} events.")
        deleted_deliveries, _ = deliveries.delete()
        self.stdout.write(f"Deleted {deleted_deliveries} webhook deliveries.")

    def _delete_lines(self, session: Session) -> None:
        """A session's log lines go first, BATCH at a time, each in a statement
        of its own: a session of a million lines is never one transaction that
        holds its locks, and a live writer's WAL, for minutes."""
        lines = session.log_entries.order_by("id").values_list("id", flat=True)
        total = session.log_entries.count()
        bar = ProgressBar(self.stdout, f"pruning session {session.pk}") if total > BATCH else None
        done = 0
        while ids := list(lines[:BATCH]):
            session.log_entries.filter(pk__in=ids).delete()
            done += len(ids)
            if bar:
                bar(done, total)

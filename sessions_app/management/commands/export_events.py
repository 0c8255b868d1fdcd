import sys

from django.core.management.base import BaseCommand, CommandError

from sessions_app import exporting
from sessions_app.models import Session
from sessions_app.progress import ProgressBar


class Command(BaseCommand):
    help = (
        "Write recorded events as JSON Lines, oldest first: all of them, one session's, "
        "or those after a seq. Only JSON goes to stdout; progress goes to stderr."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--session",
            help="only this session (its id, or external_id: an ownerless session's first)",
        )
        parser.add_argument("--since", type=int, default=0, help="only events with a greater seq")
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")

    def handle(self, *args, session: str | None, since: int, output: str | None, **options):
        if since < 0:
            raise CommandError("--since must be 0 or more")
        session_id = None
        if session is not None:
            try:
                found = Session.objects.by_key(session)
            except Session.MultipleObjectsReturned as error:
                raise CommandError(f"--session: {error}") from None
            if found is None:
                raise CommandError(f"no session with id or external_id {session!r}")
            session_id = found.pk
        progress = ProgressBar(sys.stderr, "exporting") if output else None
        try:
            if output:
                with open(output, "w", encoding="utf-8") as out:
                    count = exporting.export(
                        out, session_id=session_id, since=since, progress=progress
                    )
                self.stderr.write(f"Wrote {count} events to {output}.")
            else:
                exporting.export(self.stdout._out, session_id=session_id, since=since)
                self.stdout.flush()
        except OSError as error:
            raise CommandError(f"cannot write {output}: {error.strerror}") from None

import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from live.publisher import publisher
from sessions_app import eventfiles
from sessions_app.progress import ProgressBar


class Command(BaseCommand):
    help = (
        "Replay a JSON Lines event file (from export_events) through the services: "
        "sessions and tasks named by an existing id or external_id are updated, unknown "
        "ones created (without an owner). A session's external_id names an ownerless "
        "session first, then the one owner's that has it (with --as-new, every session "
        "and task is made anew). The whole file is checked first; a bad line changes "
        "nothing. Alerts (system.alert) are not replayed: the replayed failures raise "
        "their own."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the event file ('-' reads stdin)")
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help=(
                "scale the recorded timing: 2 is twice as fast, 0 as fast as possible "
                "(a pause longer than a minute is cut to a minute)"
            ),
        )
        parser.add_argument(
            "--as-new",
            action="store_true",
            help=(
                "replay as new copies: new ids, the same names, no external ids (into the "
                "database an export came from, beside the originals)"
            ),
        )

    def handle(self, *args, file: str, speed: float, as_new: bool = False, **options):
        if speed < 0 or speed != speed:
            raise CommandError("--speed must be 0 (as fast as possible) or more")
        try:
            if file == "-":
                lines = eventfiles.parse_lines(iter(sys.stdin))
            else:
                with open(file, encoding="utf-8") as handle:
                    lines = eventfiles.parse_lines(handle)
        except OSError as error:
            raise CommandError(f"cannot read {file}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise CommandError(f"{file} is not UTF-8 text: {error.reason}") from None
        except eventfiles.ReplayError as error:
            raise CommandError(f"{file}: {error}; nothing was replayed") from None
        if not settings.REDIS_URL:
            self.stderr.write(
                "REDIS_URL is not set: events are stored, and a server running in another "
                "process finds them in the database within a second (not at once)."
            )
        replay = eventfiles.Replay(lines, speed=speed, as_new=as_new)
        try:
            replay.check_sessions()
        except eventfiles.ReplayError as error:
            raise CommandError(f"{file}: {error}; nothing was replayed") from None
        try:
            bar = ProgressBar(self.stdout, "replaying") if len(lines) >= 200 else None
            count = replay.run(progress=bar)
        except eventfiles.ReplayError as error:
            if not error.replayed:
                raise CommandError(f"{file}: {error}; nothing was replayed") from None
            before = (
                "the line before it was replayed"
                if error.replayed == 1
                else f"the {error.replayed} lines before it were replayed"
            )
            raise CommandError(f"{file}: {error}; {before}") from None
        finally:
            publisher.flush(timeout=30)
        self.stdout.write(f"Replayed {count} events from {file}.")

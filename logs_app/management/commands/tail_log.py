import threading
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from live.errors import Refused
from live.publisher import publisher
from logs_app import services
from logs_app.tailer import Follower
from sessions_app.models import Session, Task


class Wake(FileSystemEventHandler):
    def __init__(self, name: str, event: threading.Event) -> None:
        self.name, self.event = name, event

    def on_any_event(self, event) -> None:
        paths = {Path(event.src_path).name, Path(getattr(event, "dest_path", "") or "").name}
        if self.name in paths:
            self.event.set()


class Command(BaseCommand):
    help = (
        "Follow a log file into a session, like tail -F: new lines are shipped in "
        "batches; rotation and truncation are survived; tracebacks stay one entry. "
        "Stops with Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the log file to follow")
        parser.add_argument(
            "--session",
            required=True,
            help="session id or external_id (an ownerless session's first)",
        )
        parser.add_argument("--task", help="task id to attach the lines to")
        parser.add_argument(
            "--level", default="INFO", help="level of lines that name none (default INFO)"
        )
        parser.add_argument(
            "--from-start", action="store_true", help="ship what the file holds now, too"
        )
        parser.add_argument(
            "--interval", type=float, default=1.0, help="seconds between checks without events"
        )

    def handle(self, *args, file: str, session: str, task, level, from_start, interval, **opts):
        path = Path(file).resolve()
        if not path.parent.is_dir():
            raise CommandError(f"no folder {path.parent}")
        try:
            found = Session.objects.by_key(session)
        except Session.MultipleObjectsReturned as error:
            raise CommandError(f"--session: {error}") from None
        if found is None:
            raise CommandError(f"no session with id or external_id {session!r}")
        task_id = None
        if task is not None:
            if not task.isdigit() or not Task.objects.filter(pk=int(task), session=found).exists():
                raise CommandError(f"no task {task!r} in session {found.pk}")
            task_id = int(task)
        try:
            default_level = services.parse_level(level)
        except Refused as error:
            raise CommandError(f"--level {error.message}") from None
        self.stop = getattr(self, "stop", None) or threading.Event()
        wake = threading.Event()
        follower = Follower(path, default_level=default_level, from_start=from_start)
        observer = Observer()
        observer.schedule(Wake(path.name, wake), str(path.parent))
        observer.start()
        self.stdout.write(f"Following {path} into session {found.pk}. Ctrl-C stops.")
        shipped = 0
        try:
            while not self.stop.is_set():
                shipped += self.ship(found.pk, task_id, follower.poll())
                wake.wait(interval)
                wake.clear()
        except KeyboardInterrupt:
            pass
        finally:
            observer.stop()
            observer.join(5)
            shipped += self.ship(found.pk, task_id, follower.close())
            publisher.flush(timeout=10)
        self.stdout.write(f"Shipped {shipped} entries.")

    def ship(self, session_id: int, task_id: int | None, entries: list[dict]) -> int:
        if not entries:
            return 0
        for entry in entries:
            entry["task_id"] = task_id
        return len(services.append_entries(session_id, entries))

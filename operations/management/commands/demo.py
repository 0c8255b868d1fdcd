import logging
import os
import secrets
import socket
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from live.models import ApiToken, hash_token
from operations.demo import DemoJobs

TOKEN_NAME = "demo jobs"


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        # As the server will: connections of an earlier run in TIME_WAIT do
        # not make the port busy; a listening server does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def demo_password(user, keep: Path) -> str:
    """The demo login's password, kept across runs (a new one only the first
    time, or if it was changed elsewhere), so open tabs stay logged in."""
    try:
        password = keep.read_text().strip()
    except FileNotFoundError:
        password = ""
    if not password or not user.check_password(password):
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        keep.write_text(password + "\n")
        keep.chmod(0o600)
    return password


def demo_token(user, keep: Path) -> str:
    """The demo workers' token, kept across runs of the same database (a new
    one the first time, or when the database no longer knows it), so scripts
    that use it go on working after a restart."""
    try:
        plain = keep.read_text().strip()
    except FileNotFoundError:
        plain = ""
    known = ApiToken.objects.filter(user=user, name=TOKEN_NAME)
    if plain and known.filter(digest=hash_token(plain)).exists():
        return plain
    known.delete()
    _, plain = ApiToken.issue(user, name=TOKEN_NAME)
    keep.write_text(plain + "\n")
    keep.chmod(0o600)
    return plain


class Command(BaseCommand):
    help = (
        "Run Switchboard with demo jobs moving: migrate the database, create a staff "
        "login and token (printed, and the same on every run), serve on ADDR with daphne, and keep "
        "demo sessions running. Ctrl-C stops it and ends the demo's sessions as cancelled."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "addr",
            nargs="?",
            default="127.0.0.1:8000",
            help="host:port to serve (default: %(default)s)",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=3,
            help="demo sessions running at once (default: %(default)s)",
        )
        parser.add_argument(
            "--pace",
            type=float,
            default=1.0,
            help="speed of the demo jobs: 2 is twice as fast (default: %(default)s)",
        )
        parser.add_argument(
            "--celery",
            action="store_true",
            help="also run a Celery worker, its tasks reported by switchboard_client.celery "
            "(broker: a folder, .demo-celery/, or Redis when REDIS_URL is set)",
        )
        parser.add_argument(
            "--username", default="demo", help="the staff login to create (default: %(default)s)"
        )

    def handle(
        self, *args, addr: str, jobs: int, pace: float, username: str, celery: bool, **options
    ):
        if jobs < 0 or pace <= 0:
            raise CommandError("--jobs must be 0 or more and --pace more than 0")
        host, _, port = addr.rpartition(":")
        host = (host or "127.0.0.1").strip("[]")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise CommandError(f"ADDR must be host:port, got {addr!r}")
        if not port_is_free(host, int(port)):
            raise CommandError(
                f"{host}:{port} is already in use (is another Switchboard running?). "
                "Stop it, or give another address: scripts/run 127.0.0.1:8001"
            )
        call_command("migrate", interactive=False, verbosity=0)
        users = get_user_model()
        user = users.objects.filter(username=username).first()
        if user is None:
            user = users.objects.create_superuser(username=username, email="")
        password = demo_password(user, Path(settings.BASE_DIR) / ".demo-login")
        user.is_staff = user.is_superuser = user.is_active = True
        user.save()
        # One token for the demo's workers, the same on every run.
        token = demo_token(user, Path(settings.BASE_DIR) / ".demo-token")
        shown = f"[{host}]" if ":" in host else host
        base_url = f"http://{shown}:{port}"
        demo = DemoJobs(base_url, token, parallel=jobs, pace=pace)
        demo.start()
        worker = None
        if celery:
            try:
                from operations.celery_demo import CeleryDemo
            except ImportError as error:
                raise CommandError(f"--celery needs Celery installed: {error}") from None
            folder = str(Path(settings.BASE_DIR) / ".demo-celery")
            worker = CeleryDemo(base_url, token, folder, every=15 / pace)
            worker.start()
        self.stdout.write(
            self.style.SUCCESS("Switchboard demo")
            + f"\n  open     {base_url}/  (and the admin at {base_url}/admin/)"
            + f"\n  login    {username} / {password}"
            + f"\n  API      {base_url}/api/v1/docs  (token for scripts: {token})"
            + "\n           the login and the token stay the same on every run of this database"
            + f"\n  socket   ws://{shown}:{port}/ws/"
            + "\n  Stop with Ctrl-C.\n"
        )
        # One line per request from three busy jobs would bury the text above.
        logging.getLogger("django.channels.server").addFilter(
            lambda record: record.levelno >= logging.WARNING
        )
        try:
            call_command("runserver", addr, use_reloader=False, skip_checks=True)
        finally:
            if worker is not None:
                worker.stop()
            ended = demo.finish()
            self.stdout.write(f"Stopped; {ended} demo session(s) ended as cancelled.")
            self.stdout.flush()
            # Requests that were in flight when the server stopped wait for its
            # loop for ever, and the interpreter would wait for them at exit.
            os._exit(0)

import logging
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from sessions_app.demo import DemoJobs
from sessions_app.models import ApiToken


class Command(BaseCommand):
    help = (
        "Run Switchboard with demo jobs moving: migrate the database, create a staff "
        "login (printed), serve on ADDR with daphne, and keep demo sessions running."
    )

    def add_arguments(self, parser):
        parser.add_argument("addr", nargs="?", default="127.0.0.1:8000", help="host:port to serve")
        parser.add_argument("--jobs", type=int, default=3, help="demo sessions running at once")
        parser.add_argument("--pace", type=float, default=1.0, help="speed of the demo jobs")
        parser.add_argument("--username", default="demo", help="the staff login to create")

    def handle(self, *args, addr: str, jobs: int, pace: float, username: str, **options):
        if jobs < 0 or pace <= 0:
            raise CommandError("--jobs must be 0 or more and --pace more than 0")
        host, _, port = addr.rpartition(":")
        if not port.isdigit():
            raise CommandError(f"ADDR must be host:port, got {addr!r}")
        call_command("migrate", interactive=False, verbosity=0)
        users = get_user_model()
        user = users.objects.filter(username=username).first()
        if user is None:
            user = users.objects.create_superuser(username=username, email="")
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        user.is_staff = user.is_superuser = user.is_active = True
        user.save()
        _, token = ApiToken.issue(user, name="demo jobs")
        base_url = f"http://{host or '127.0.0.1'}:{port}"
        DemoJobs(base_url, token, parallel=jobs, pace=pace).start()
        self.stdout.write(
            self.style.SUCCESS("Switchboard demo")
            + f"\n  open     {base_url}/  (and the admin at {base_url}/admin/)"
            + f"\n  login    {username} / {password}"
            + f"\n  API      {base_url}/api/v1/docs  (token for scripts: {token})"
            + f"\n  socket   ws://{host or '127.0.0.1'}:{port}/ws/"
            + "\n  Stop with Ctrl-C.\n"
        )
        # One line per request from three busy jobs would bury the text above.
        logging.getLogger("django.channels.server").addFilter(
            lambda record: record.levelno >= logging.WARNING
        )
        call_command("runserver", addr, use_reloader=False, skip_checks=True)

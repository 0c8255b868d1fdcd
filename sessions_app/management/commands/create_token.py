from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from live.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create an API token for a user and print it. The token is shown once, "
        "alone on the last line; only its hash is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="the user the token acts as")
        parser.add_argument("--name", default="", help="a label to recognise the token by")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="create the user (without a password) if it does not exist",
        )

    def handle(self, *args, username: str, name: str, create_user: bool, **options):
        users = get_user_model()
        try:
            user = users.objects.get_by_natural_key(username)
        except users.DoesNotExist:
            if not create_user:
                raise CommandError(f"no user named {username!r} (use --create-user to make one)")
            user = users.objects.create_user(username=username)
            self.stdout.write(f"Created user {username!r}.")
        if not user.is_active:
            raise CommandError(f"user {username!r} is not active")
        token, plain = ApiToken.issue(user, name=name)
        self.stdout.write(f"Token {token.prefix}… for {username!r}; it will not be shown again:")
        self.stdout.write(plain)

from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Sessions"

    def ready(self) -> None:
        from django.core import checks

        from sessions_app import daphne_hooks, signals  # noqa: F401

        checks.register(daphne_hooks.check, checks.Tags.compatibility, deploy=True)

from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Sessions"

    def ready(self) -> None:
        from django.core import checks

        from sessions_app import daphne_hooks, events, signals, stale  # noqa: F401 (signals)

        # The stale-task sweeper starts with the server's loop.
        events.on_serve(stale.start)
        checks.register(daphne_hooks.check, checks.Tags.compatibility, deploy=True)

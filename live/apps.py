from django.apps import AppConfig


class LiveConfig(AppConfig):
    """The core: the event log, the publisher, the hub, the consumer and
    socket identity. Features plug their streams and event kinds into it (the
    consumer still imports sessions_app for cancel_task and the channel
    registry; see docs/ARCHITECTURE.md, "The layout")."""

    name = "live"
    verbose_name = "Live core"

    def ready(self) -> None:
        from django.core import checks

        from live import daphne_hooks, tokens

        checks.register(daphne_hooks.check, checks.Tags.compatibility, deploy=True)
        tokens.connect()

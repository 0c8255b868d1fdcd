from django.apps import AppConfig


class LiveConfig(AppConfig):
    """The core: the event log, the publisher, the hub, the consumer and the
    stream registry. Features plug their streams, event kinds and socket
    actions into it; it imports none of them."""

    name = "live"
    verbose_name = "Live core"

    def ready(self) -> None:
        from django.core import checks

        from live import daphne_hooks

        checks.register(daphne_hooks.check, checks.Tags.compatibility, deploy=True)

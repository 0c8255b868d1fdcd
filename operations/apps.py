from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """What keeps a deployment honest: the stale-task sweeper, alerts and
    webhooks, health and metrics, the demo."""

    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        from live import publisher
        from operations import outbox, stale

        # The stale-task sweeper and the webhook outbox start with the server's loop.
        publisher.on_serve(stale.start)
        publisher.on_serve(outbox.start)

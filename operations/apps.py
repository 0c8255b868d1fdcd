from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """What keeps a deployment honest: the stale-task sweeper, alerts and
    webhooks, health and metrics, the demo."""

    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        from live import publisher
        from operations import outbox, settle, stale

        # The stale-task and settled-session sweepers and the webhook outbox
        # start with the server's loop.
        publisher.on_serve(stale.start)
        publisher.on_serve(settle.start)
        publisher.on_serve(outbox.start)

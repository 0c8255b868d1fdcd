from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """What keeps a deployment honest: the stale-task sweeper, alerts and
    webhooks, health and metrics, the demo."""

    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        from live import publisher
        from operations import outbox, settle, stale
        from sessions_app import questions

        # The stale-task and settled-session sweepers and the webhook outbox
        # start with the server's loop.
        publisher.on_serve(stale.start)
        publisher.on_serve(settle.start)
        publisher.on_serve(outbox.start)
        # Questions past their timeout expire to their default.
        publisher.on_serve(questions.start)

from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Sessions"

    def ready(self) -> None:
        from sessions_app import actions, signals, streams  # noqa: F401 (signals connect)

        # Plug session, task and the shared channels, and cancel_task, into the core.
        streams.register_streams()
        actions.register_actions()

from django.apps import AppConfig


class LogsAppConfig(AppConfig):
    name = "logs_app"
    verbose_name = "Logs"

    def ready(self) -> None:
        # Plug the logs:<session_id> channel and log.append events into the core.
        from logs_app import eventfiles, streams

        streams.register()
        eventfiles.register()

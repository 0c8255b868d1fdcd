from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Sessions"

    def ready(self) -> None:
        from live import auth, events
        from sessions_app import access, actions, channels, questions, resend, signals, streams  # noqa: F401 (signals, checks)

        # Plug session, task and the shared channels, and cancel_task, into the core.
        streams.register_streams()
        actions.register_actions()
        questions.register_replay()
        # Events without a channel of their own are listed under their task's or session's.
        events.register_primary(channels.primary)
        # Those who see every session (viewers, operators) use the pages too.
        auth.admit_browsers(access.sees_all)

"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Django's handler, with each request's sync work on a long-lived thread
# (project/handler.py).
from project.handler import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

# Imported after Django is set up.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from live import daphne_hooks  # noqa: E402
from live.auth import IdentityMiddleware  # noqa: E402
from live.flow import FlowApp  # noqa: E402
from live.publisher import BindPublisher  # noqa: E402
from live.routing import websocket_urlpatterns  # noqa: E402
from project import bodylimit  # noqa: E402
from project.bodylimit import BodyLimit  # noqa: E402
from project.deflate import accept_deflate  # noqa: E402
from project.rootpath import RootPath  # noqa: E402

# The hooks into daphne's internals: applied here, or the server refuses to start.
daphne_hooks.install(
    limit=bodylimit.limit,
    answer=bodylimit.answer,
    compression=settings.SWITCHBOARD["WS_COMPRESSION"],
    accept=accept_deflate,
    drain_seconds=lambda: settings.SWITCHBOARD["DRAIN_SECONDS"],
)
application = BindPublisher(
    RootPath(
        ProtocolTypeRouter(
            {
                "http": BodyLimit(django_asgi_app),
                "websocket": FlowApp(
                    IdentityMiddleware(URLRouter(websocket_urlpatterns)),
                    limit=lambda: settings.SWITCHBOARD["SEND_BUFFER_BYTES"],
                ),
            }
        ),
        settings.ROOT_PATH,
    )
)

# What start-up made (modules, settings, URL patterns, the app) lives as long
# as the process: out of the collector's generations, a full collection no
# longer walks it. With this app loaded a full collection took 30-85 ms, a
# pause that landed on whichever write was being fanned out (the p99 of
# bench/fanout.py); frozen, it takes well under 1 ms.
gc.collect()
gc.freeze()

"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from project.bodylimit import BodyLimit, guard_daphne  # noqa: E402
from project.deflate import offer_compression  # noqa: E402
from project.rootpath import RootPath  # noqa: E402
from sessions_app.auth import IdentityMiddleware  # noqa: E402
from sessions_app.events import BindPublisher  # noqa: E402
from sessions_app.flow import FlowApp  # noqa: E402
from sessions_app.routing import websocket_urlpatterns  # noqa: E402

guard_daphne()
if settings.SWITCHBOARD["WS_COMPRESSION"]:
    offer_compression()
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

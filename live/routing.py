from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from live.consumers import SwitchboardConsumer

websocket_urlpatterns = [
    path("ws/", SwitchboardConsumer.as_asgi()),
    # Any other path: the handshake is refused (403), not an error.
    re_path(r"", WebsocketDenier.as_asgi()),
]

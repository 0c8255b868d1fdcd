from django.urls import path

from sessions_app.consumers import SwitchboardConsumer

websocket_urlpatterns = [path("ws/", SwitchboardConsumer.as_asgi())]

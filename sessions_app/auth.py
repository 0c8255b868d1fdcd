"""Identities, the same for the socket and the API.

Browsers: the Django session cookie of a staff user; a socket handshake must
carry an Origin in ALLOWED_HOSTS. Workers and scripts: `Authorization:
Bearer <token>`, with no Origin needed (an Origin that is present must still
be allowed). Anything else is refused at the handshake (HTTP 403).
"""

from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier
from ninja.security import HttpBearer, SessionAuth

from sessions_app.models import ApiToken


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer` header; '' for a malformed one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def origin_allowed(headers: list[tuple[bytes, bytes]]) -> bool:
    """True when there is no Origin, or it names one of ALLOWED_HOSTS."""
    validator = AllowedHostsOriginValidator(None)
    for name, value in headers:
        if name == b"origin":
            try:
                return validator.valid_origin(urlparse(value.decode("latin1")))
            except (UnicodeDecodeError, ValueError):
                return False
    return True


class IdentityMiddleware:
    """Routes a WebSocket handshake to the token path or the cookie path."""

    def __init__(self, inner) -> None:
        self.token_app = inner
        self.cookie_app = AllowedHostsOriginValidator(AuthMiddlewareStack(inner))

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", [])
        token = bearer_token(headers)
        if token is None:
            return await self.cookie_app(dict(scope, auth="cookie"), receive, send)
        user = None
        if token and origin_allowed(headers):
            user = await database_sync_to_async(ApiToken.authenticate)(token)
        if user is None:
            return await WebsocketDenier()(scope, receive, send)
        return await self.token_app(dict(scope, user=user, auth="token"), receive, send)


def allowed_user(user, auth: str) -> bool:
    """Cookie identities must be active staff; token identities active users."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return auth == "token" or user.is_staff


class TokenAuth(HttpBearer):
    openapi_scheme = "bearer"

    def authenticate(self, request, token: str):
        user = ApiToken.authenticate(token)
        if user is not None:
            request.user = user
        return user


class StaffSessionAuth(SessionAuth):
    """The Django session of a staff user, with the CSRF check on writes."""

    def __call__(self, request):
        # A request that names a bearer token is judged by it alone: a bad
        # token is 401, not a CSRF failure of the cookie path.
        if request.headers.get("Authorization"):
            return None
        return super().__call__(request)

    def authenticate(self, request, key):
        user = super().authenticate(request, key)
        if user and allowed_user(user, "cookie"):
            return user
        return None


API_AUTH = [TokenAuth(), StaffSessionAuth()]

"""Identities, the same for the socket and the API.

Browsers: the Django session cookie of a staff user; a socket handshake must
carry an Origin in ALLOWED_HOSTS. Workers and scripts: `Authorization:
Bearer <token>`, with no Origin needed (an Origin that is present must still
be allowed). Anything else is refused at the handshake (HTTP 403).
"""

from dataclasses import dataclass
from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier
from ninja.security import HttpBearer, SessionAuth

from sessions_app.models import ApiToken, hash_token


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
        scope = dict(scope, user=user, auth="token", token_digest=hash_token(token))
        return await self.token_app(scope, receive, send)


@dataclass(frozen=True)
class Identity:
    """What a socket was let in with, to be checked again while it is open."""

    user_id: int
    auth: str  # "token" or "cookie"
    key: str  # the token's digest, or the session key


def identity_of(scope) -> Identity | None:
    user = scope.get("user")
    if scope.get("auth") == "token":
        digest = scope.get("token_digest")
        return Identity(user.pk, "token", digest) if digest else None
    session = scope.get("session")
    key = getattr(session, "session_key", None)
    return Identity(user.pk, "cookie", key) if key else None


def still_valid(identities: list[Identity]) -> set[Identity]:
    """The identities that would still be let in now: the token exists (or the
    browser session is still logged in as that user), and the user is active
    (and staff, for a browser). A few queries for any number of sockets."""
    from django.contrib.auth import SESSION_KEY, get_user_model
    from django.contrib.sessions.models import Session as BrowserSession
    from django.utils import timezone

    users = {
        row["pk"]: row
        for row in get_user_model()
        .objects.filter(pk__in={i.user_id for i in identities})
        .values("pk", "is_active", "is_staff")
    }
    digests = {i.key for i in identities if i.auth == "token"}
    tokens = set(ApiToken.objects.filter(digest__in=digests).values_list("digest", "user_id"))
    keys = {i.key for i in identities if i.auth == "cookie"}
    logged_in = set()
    for session in BrowserSession.objects.filter(
        session_key__in=keys, expire_date__gt=timezone.now()
    ):
        user_id = session.get_decoded().get(SESSION_KEY)
        if user_id is not None:
            logged_in.add((session.session_key, str(user_id)))
    valid = set()
    for identity in identities:
        user = users.get(identity.user_id)
        if user is None or not user["is_active"]:
            continue
        if (
            identity.auth == "token"
            and (identity.key, identity.user_id) in tokens
            or (
                identity.auth == "cookie"
                and user["is_staff"]
                and (identity.key, str(identity.user_id)) in logged_in
            )
        ):
            valid.add(identity)
    return valid


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

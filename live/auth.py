"""Identities, the same for the socket and the API.

Browsers: the Django session cookie of a staff user, or of a user a feature
admits to the pages (`admit_browsers`: sessions_app lets in those who see
every session, viewers and operators); a socket handshake must
carry the server's own Origin (scheme, host and port), or one listed in
CSRF_TRUSTED_ORIGINS. Workers and scripts: `Authorization:
Bearer <token>`, with no Origin needed (an Origin that is present must still
be allowed). Anything else is refused at the handshake (HTTP 403).
"""

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier
from django.conf import settings
from django.contrib.auth.decorators import user_passes_test
from django.utils.http import is_same_domain
from ninja.security import HttpBearer, SessionAuth

from live import tokens
from live.models import ApiToken, hash_token

# Who, besides staff, may use the pages with a cookie; features add rules at start-up.
_browser_rules: list[Callable] = []


def admit_browsers(rule: Callable) -> None:
    """Let users for whom `rule(user)` is true use the pages, their socket
    and the API with a cookie, as staff do (the admin stays staff-only)."""
    if rule not in _browser_rules:
        _browser_rules.append(rule)


def browser_user(user) -> bool:
    """An active user who may use the pages: staff, or admitted by a feature's rule."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return user.is_staff or any(rule(user) for rule in _browser_rules)


def browser_required(view):
    """For the pages: a browser user, else the login page (as staff_member_required)."""
    return user_passes_test(browser_user)(view)


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer` header; '' for a malformed one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name == wanted:
            return value.decode("latin1")
    return None


def trusted_origin(origin: str) -> bool:
    """An origin listed in CSRF_TRUSTED_ORIGINS (`https://*.example.com` too)."""
    parsed = urlparse(origin)
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        if entry == origin:
            return True
        listed = urlparse(entry)
        if (
            listed.netloc.startswith("*")
            and listed.scheme == parsed.scheme
            and is_same_domain(parsed.netloc, listed.netloc[1:])
        ):
            return True
    return False


def request_scheme(scope) -> str:
    """ "https" or "http": what the page that opened this socket was served
    over, as Django's request.is_secure() decides it (SECURE_PROXY_SSL_HEADER
    behind a proxy, with DJANGO_HTTPS on)."""
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name = proxy[0].removeprefix("HTTP_").lower().replace("_", "-").encode()
        if _header(scope.get("headers", []), name) == proxy[1]:
            return "https"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def origin_allowed(
    headers: list[tuple[bytes, bytes]], required: bool = False, scheme: str = "http"
) -> bool:
    """The handshake's Origin is this server's own or a trusted one.

    Its own: the scheme, host and port the request was sent to (`scheme`, the
    Host header), as Django's CSRF check reads them, and a host in
    ALLOWED_HOSTS. A page served by another port of the same host, or over the
    other scheme, is another origin, although the browser sends it the same
    cookies. No Origin passes unless `required` (browsers).
    """
    origin = _header(headers, b"origin")
    if origin is None:
        return not required
    try:
        parsed = urlparse(origin)
        if not AllowedHostsOriginValidator(None).valid_origin(parsed):
            return False
    except ValueError:
        return False
    host = _header(headers, b"host") or ""
    if settings.USE_X_FORWARDED_HOST and _header(headers, b"x-forwarded-host"):
        # As Django reads it: the proxy's header, its first value.
        host = _header(headers, b"x-forwarded-host").split(",")[0].strip()
    own = bool(host) and parsed.netloc.lower() == host.lower() and parsed.scheme == scheme
    return own or trusted_origin(origin)


class IdentityMiddleware:
    """Routes a WebSocket handshake to the token path or the cookie path."""

    def __init__(self, inner) -> None:
        self.token_app = inner
        self.cookie_app = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", [])
        token = bearer_token(headers)
        scheme = request_scheme(scope)
        if token is None:
            if not origin_allowed(headers, required=True, scheme=scheme):
                return await WebsocketDenier()(scope, receive, send)
            return await self.cookie_app(dict(scope, auth="cookie"), receive, send)
        user = None
        if token and origin_allowed(headers, scheme=scheme):
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
    (and a browser_user, for a browser). A few queries for any number of
    sockets, and two more per non-staff browser user (its permissions)."""
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
    # Non-staff browsers are let in by a rule on their permissions: read them.
    browsing = {i.user_id for i in identities if i.auth == "cookie"}
    admitted = {
        user.pk for user in get_user_model().objects.filter(pk__in=browsing) if browser_user(user)
    }
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
                and identity.user_id in admitted
                and (identity.key, str(identity.user_id)) in logged_in
            )
        ):
            valid.add(identity)
    return valid


def allowed_user(user, auth: str) -> bool:
    """Cookie identities must be browser users (staff, viewers, operators);
    token identities active users."""
    if auth == "token":
        return user is not None and user.is_authenticated and user.is_active
    return browser_user(user)


def _admit(request, token: str, user):
    if user is not None:
        request.user = user
        request.throttle_key = f"token:{token[:10]}"  # the token's public prefix
    return user


class TokenAuth(HttpBearer):
    """The bearer token, from this process's token cache (live/tokens.py)."""

    openapi_scheme = "bearer"

    def authenticate(self, request, token: str):
        return _admit(request, token, tokens.lookup(token))


class StaffSessionAuth(SessionAuth):
    """The Django session of a browser user (staff, or admitted by a feature),
    with the CSRF check on writes."""

    def __call__(self, request):
        # A request that names a bearer token is judged by it alone: a bad
        # token is 401, not a CSRF failure of the cookie path.
        if request.headers.get("Authorization"):
            return None
        # No signed-in browser user: no identity at all, which is 401; the CSRF
        # check only matters for a cookie that would be accepted.
        if not allowed_user(getattr(request, "user", None), "cookie"):
            return None
        return super().__call__(request)

    def authenticate(self, request, key):
        user = super().authenticate(request, key)
        if user and allowed_user(user, "cookie"):
            return user
        return None


class AsyncTokenAuth(TokenAuth):
    """The same, for async endpoints: a kept token is checked on the event
    loop, a token not kept yet on a database thread."""

    async def authenticate(self, request, token: str):
        return _admit(request, token, await tokens.alookup(token))


API_AUTH = [TokenAuth(), StaffSessionAuth()]
# For async endpoints: a token needs no thread of the request's own.
ASYNC_AUTH = [AsyncTokenAuth(), StaffSessionAuth()]

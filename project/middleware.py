"""Middleware of our own: JSON errors under the API, static files without a
thread, Django's own hooks on the event loop, and a short way through for
bearer-token API requests.

Every answer under `/api/` is JSON, errors included.

Django answers an unknown path, a refused method or a crash with an HTML page
of its own; under the API a client gets `{"detail": ...}` with the same status
instead (the `Allow` header of a 405 is kept).
"""

import os
from http import HTTPStatus

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as message
from django.contrib.sessions import middleware as sessions
from django.http import JsonResponse
from django.middleware import clickjacking, common, csrf, security
from whitenoise.middleware import WhiteNoiseMiddleware

PREFIX = "/api/"


def bearer_api(request) -> bool:
    """A request under /api/ that carries `Authorization: Bearer`: judged by
    its token alone (live.auth), so it needs no session, no CSRF check (there
    is no cookie identity to forge) and no messages. Worked out once."""
    known = getattr(request, "_bearer_api", None)
    if known is None:
        scheme = request.META.get("HTTP_AUTHORIZATION", "")[:7].lower()
        known = request._bearer_api = scheme == "bearer " and request.path.startswith(PREFIX)
    return known


def _json(request, response):
    if (
        response.status_code < 400
        or not request.path.startswith(PREFIX)
        or response.get("Content-Type", "").startswith("application/json")
    ):
        return response
    try:
        detail = HTTPStatus(response.status_code).phrase.lower()
    except ValueError:
        detail = "error"
    answer = JsonResponse({"detail": detail}, status=response.status_code)
    if response.has_header("Allow"):
        answer["Allow"] = response["Allow"]
    return answer


class ApiJsonErrors:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return _json(request, self.get_response(request))

    async def _acall(self, request):
        return _json(request, await self.get_response(request))


class StaticFiles(WhiteNoiseMiddleware):
    """WhiteNoise, async: serving a file needs no thread, and a request that is
    not for a static file goes on without leaving the event loop. (WhiteNoise's
    own middleware is sync only, which would put every request, API calls
    included, through a thread and back.)"""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response) -> None:
        super().__init__(get_response)
        markcoroutinefunction(self)

    def add_files(self, root, prefix=None) -> None:
        # Before collectstatic there is no STATIC_ROOT; the finders serve the
        # files then, so its absence is no cause for a warning.
        if self.use_finders and str(root) == str(self.static_root) and not os.path.isdir(root):
            return
        super().add_files(root, prefix)

    async def __call__(self, request):
        if self.autorefresh:
            static_file = self.find_file(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)


class OnTheLoop:
    """Django's middleware hooks that do no database work, run on the event loop.

    In an async server Django runs each sync `process_request` /
    `process_response` through a thread and back: about ten thread hops a
    request for the stock middleware. These do no I/O of their own (cookies,
    headers, lazy objects), so they run in place; `in_thread` says when one
    must still go to a thread (a session or messages to save). Those that only
    serve cookie identities (`cookie_only`) step aside for a bearer API
    request.
    """

    cookie_only = False

    def in_thread(self, request) -> bool:
        return False

    def __call__(self, request):
        if self.cookie_only and not self.async_mode and bearer_api(request):
            return self.get_response(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if self.cookie_only and bearer_api(request):
            return await self.get_response(request)
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.in_thread(request):
                respond = sync_to_async(self.process_response, thread_sensitive=True)
                return await respond(request, response)
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(OnTheLoop, security.SecurityMiddleware):
    pass


class SessionMiddleware(OnTheLoop, sessions.SessionMiddleware):
    cookie_only = True

    def in_thread(self, request) -> bool:
        return request.session.accessed  # it may be saved


class CommonMiddleware(OnTheLoop, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(OnTheLoop, csrf.CsrfViewMiddleware):
    cookie_only = True

    async def process_view(self, request, callback, callback_args, callback_kwargs):
        if bearer_api(request):
            return None
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(OnTheLoop, auth.AuthenticationMiddleware):
    # request.user of a bearer request is its token's user (live.auth).
    cookie_only = True


class MessageMiddleware(OnTheLoop, message.MessageMiddleware):
    cookie_only = True

    def in_thread(self, request) -> bool:
        storage = getattr(request, "_messages", None)
        return bool(storage is not None and (storage.used or storage.added_new))


class XFrameOptionsMiddleware(OnTheLoop, clickjacking.XFrameOptionsMiddleware):
    pass

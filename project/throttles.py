"""Request rates on the HTTP API, per identity and per address, with
django-ninja's throttle hooks (429 with Retry-After).

Token buckets in each server process's memory, not the history lists in the
cache that ninja's own throttles keep: one check is a few arithmetic
operations under a lock, with no cache round trip on the request path, and
the cost does not grow with the rate. The limits are per server process,
which is what they protect: one runaway worker cannot take a process. A log
batch is one request, whatever its number of lines.

The address limit is checked before anything else (`AddressLimit`, a
middleware for /api/), so that requests with bad tokens, which end at
authentication, drain it too; the identity limit needs the identity, so it is
ninja's throttle, after authentication.
"""

import math
import threading
from collections import OrderedDict

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import JsonResponse
from ninja.throttling import BaseThrottle

from live.guards import TokenBucket

MAX_KEYS = 10_000  # buckets kept; the least recently used go first


class BucketThrottle(BaseThrottle):
    """`rate` requests a second, up to `burst` at once, per key; 0 turns it off."""

    scope = ""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = float(rate), float(max(burst, 1))
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.lock = threading.Lock()
        self.waits = threading.local()

    def key(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request) -> bool:
        if self.rate <= 0:
            return True
        key = self.key(request)
        if key is None:
            return True
        with self.lock:
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
                while len(self.buckets) > MAX_KEYS:
                    self.buckets.popitem(last=False)
            else:
                self.buckets.move_to_end(key)
            if bucket.take():
                return True
            self.waits.seconds = (1 - bucket.tokens) / self.rate
            return False

    def wait(self) -> float | None:
        return getattr(self.waits, "seconds", None)


class IdentityThrottle(BucketThrottle):
    """Per API token (per user for a browser's session)."""

    scope = "identity"

    def key(self, request) -> str | None:
        token = getattr(request, "throttle_key", None)
        if token:
            return token
        user = getattr(request, "auth", None)
        return f"user:{user.pk}" if getattr(user, "pk", None) is not None else None


class AddressThrottle(BucketThrottle):
    """Per client address (daphne's --proxy-headers puts the proxy's
    X-Forwarded-For there when it runs behind one)."""

    scope = "address"

    def key(self, request) -> str | None:
        return request.META.get("REMOTE_ADDR") or None


def from_settings() -> list[BucketThrottle]:
    """ninja's throttles: the identity's (the address's is AddressLimit)."""
    conf = settings.SWITCHBOARD
    return [IdentityThrottle(conf["TOKEN_RATE"], conf["TOKEN_BURST"])]


def too_many(seconds: float | None) -> JsonResponse:
    response = JsonResponse({"detail": "Too many requests."}, status=429)
    response["Retry-After"] = str(max(1, math.ceil(seconds or 1)))
    return response


class AddressLimit:
    """The address's request rate on /api/, before authentication: a 429
    whatever the request carries, bad tokens included."""

    sync_capable = True
    async_capable = True
    prefix = "/api/"

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        conf = settings.SWITCHBOARD
        self.throttle = AddressThrottle(conf["ADDRESS_RATE"], conf["ADDRESS_BURST"])
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def refused(self, request) -> JsonResponse | None:
        if not request.path_info.startswith(self.prefix):
            return None
        if self.throttle.allow_request(request):
            return None
        return too_many(self.throttle.wait())

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self.refused(request) or self.get_response(request)

    async def _acall(self, request):
        return self.refused(request) or await self.get_response(request)

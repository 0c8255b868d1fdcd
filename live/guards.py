"""The guards of one socket, each a small unit that needs no socket to test.

The consumer asks them and acts on the answer: a close code, a refusal to
send, or nothing. Close codes are part of the protocol (docs/PROTOCOL.md).
"""

import time
from dataclasses import dataclass

from live.errors import Refused

CLOSE_IDLE = 4408
CLOSE_FLOOD = 4429
# daphne (autobahn) sends only 1000 or 3000-4999 from an application, so not 1009.
CLOSE_TOO_LARGE = 4413
# An identity revoked while its socket was open (token deleted, user
# deactivated, browser session logged out or no longer staff).
CLOSE_REVOKED = 4401
# A socket that has not read what it was sent for SLOW_CLOSE seconds.
CLOSE_SLOW = 4503
# A frame could not be sent (it should not happen: frames are bounded and
# valid Unicode); the client reconnects and resumes from its last seq.
CLOSE_SEND_FAILED = 4500
# As 1013 "try again later", which autobahn refuses to send.
CLOSE_OVERLOADED = 4013

# A flooding client is dropped when its refused frames, forgiven at
# FLOOD_FORGIVE a second, pile up past FLOOD_LIMIT: sending at twice the rate
# limit trips it within seconds, however fast the server drains the frames.
FLOOD_LIMIT = 500
FLOOD_FORGIVE = 50


class TokenBucket:
    """`rate` a second, up to `burst` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, count: int = 1) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= count:
            self.tokens -= count
            return True
        return False


def frame_size(size: int, limit: int) -> Refused | None:
    """A frame past the size limit is refused, and its socket closed (CLOSE_TOO_LARGE)."""
    if size > limit:
        return Refused(f"frames are limited to {limit} bytes", code="too_large")
    return None


class FloodGuard:
    """The frame rate of one socket: frames past the rate are refused, a
    refusal is said once per hundred, and a socket that keeps on is closed."""

    def __init__(self, rate: float, burst: float) -> None:
        self.bucket = TokenBucket(rate, burst)
        self.refused = 0.0
        self.refused_at = time.monotonic()

    def admit(self) -> tuple[bool, Refused | None, int | None]:
        """(whether the frame is handled, a refusal to say, a close code)."""
        if self.bucket.take():
            return True, None, None
        now = time.monotonic()
        forgiven = (now - self.refused_at) * FLOOD_FORGIVE
        self.refused_at = now
        self.refused = max(0.0, self.refused - forgiven) + 1
        if self.refused > FLOOD_LIMIT:
            return False, None, CLOSE_FLOOD
        if int(self.refused) % 100 == 1:
            return False, Refused("too many frames; slow down", code="rate_limited"), None
        return False, None, None


def admission(connections: int, limit: int) -> bool:
    """Whether one more socket may open (a limit of 0: no limit)."""
    return not limit or connections < limit


@dataclass
class Liveness:
    """When the client was last heard from, and since when its socket has not
    read (paused by flow control); the watchdog asks `verdict()` each round."""

    last_heard: float
    paused_at: float | None = None

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def verdict(self, now: float, idle_timeout: float, slow_close: float) -> int | None:
        """The close code the socket has earned by now, if any."""
        if now - self.last_heard > idle_timeout:
            return CLOSE_IDLE
        if self.paused_at is not None and now - self.paused_at > slow_close:
            return CLOSE_SLOW
        return None

"""How one call rides through a server that is away.

A failure that says the server could not take the request now is tried
again: the connection refused, cut or timed out (status 0), 408, 429, 502,
503 and 504. Any other answer is final: a 4xx will not change by asking
again, and a 500 is a fault of the server's own, not an outage.

The pauses between tries grow (0.25 s, 0.5 s, 1 s... at most 8 s), each a
random time between half its ceiling and the ceiling, so that clients that
lost the same server come back spread out rather than all at once. A
`Retry-After` (on a 429 or a 503) is a floor: the next try is never earlier.
A call gives up once `retry_for` seconds have passed since its first try
(a try under way finishes first, which takes at most the request timeout), or
at once when the server asks to come back later than that.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

RETRIED = frozenset({0, 408, 429, 502, 503, 504})
FIRST = 0.25  # seconds: the ceiling of the first pause
MOST = 8.0  # seconds: the highest ceiling


def transient(status: int) -> bool:
    """An answer (or none, status 0) that may be different if asked again soon."""
    return status in RETRIED


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Backoff:
    """The pauses between the tries of one call."""

    def __init__(self, retry_for: float) -> None:
        self.retry_for = retry_for
        self.started = time.monotonic()
        self.deadline = self.started + retry_for
        self.tries = 1  # the first try is under way

    def pause(self, asked: float | None) -> float | None:
        """Seconds to wait before the next try, or None: give up now.
        `asked` is the server's Retry-After, if it said one."""
        left = self.deadline - time.monotonic()
        if left <= 0 or (asked is not None and asked > left):
            return None
        ceiling = min(MOST, FIRST * 2 ** (self.tries - 1))
        pause = random.uniform(ceiling / 2, ceiling)
        if asked is not None:
            pause = max(pause, asked)
        self.tries += 1
        return min(pause, left)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

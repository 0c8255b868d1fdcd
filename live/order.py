"""Wide channels in commit order, in each process's hub (PostgreSQL).

A channel of one session (session:<id>, task:<id>, logs:<id>) has its ids in
commit order: its writers hold the session's event lock. A wide channel
(sessions, tasks, system) does not: writers of two sessions may commit ids
10 and 11 in either order. The hub therefore hands a wide channel's events
on only once the commit horizon has passed them (ordering.horizon: every id
at or below it is committed or never will be), in id order, each with the
seq of the channel's event before it, so that a subscriber's gap check
(live.subscription) means what it says.

The horizon is read only when a wide event waits, one read for all that
wait, by one task at a time; nobody waits for the read but the wide frames
themselves. An id at or below the horizon that no message brought (a write
rolled back, a message lost, a writer the layer does not reach) may have
been on a wide channel: the next event handed on such a channel says so
(its `prev` is past it), and subscribers catch up from the database.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async

from live import ordering

log = logging.getLogger("switchboard.hub")

# Waits between horizon reads while a wide event is held (an older write is
# still in flight), growing to the last.
RETRY_SECONDS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
# Ids remembered above the horizon at most; past this (a database that does
# not answer) the held events are dropped and subscribers catch up.
SEEN_LIMIT = 100_000

Hand = Callable[[dict, dict[str, int]], Awaitable[None]]
Lost = Callable[[list[str], int], None]


class CommitOrder:
    """`hand(message, {channel: prev})` relays a released event on the wide
    channels watched here; `lost(channels, top)` asks their subscribers to
    read the database up to `top`; `watched()` names the wide channels that
    have subscribers here.

    It runs while any wide channel is watched here (start() to stop()), and
    then follows every message with a wide place, watched or not: a wide
    channel's `prev` must count the events it had while nobody here watched
    it, or a subscriber who comes later would be handed one past a gap."""

    def __init__(self, hand: Hand, lost: Lost, watched: Callable[[], list[str]]) -> None:
        self.hand = hand
        self.lost = lost
        self.watched = watched
        # Whether it follows messages (a wide channel is watched here).
        self.active = False
        # Every id at or below it has been seen through (None: starting).
        self.released: int | None = None
        # Ids above `released` that a message brought.
        self.seen: set[int] = set()
        # Messages with wide places, waiting for the horizon, by seq.
        self.held: dict[int, dict] = {}
        # Each wide channel's last released seq, or a bound: no event of it
        # lies between that and `released` that was not released.
        self.last: dict[str, int] = {}
        self._task: asyncio.Task | None = None
        self._again = False

    async def start(self) -> None:
        """Begin at the current horizon (a wide channel is watched here now):
        what is at or below it is in the database for the subscribers' reads,
        and what comes after is followed from here. Once: an order already
        running goes on from where it is."""
        if self.active:
            return
        self.active = True
        self.released = None
        top = await database_sync_to_async(ordering.horizon)()
        if not self.active:
            return  # stopped meanwhile
        self.released = top or 0
        self.seen = {seq for seq in self.seen if seq > self.released}
        self.held = {seq: m for seq, m in self.held.items() if seq > self.released}
        self.last = {}
        if self.held:
            self.wake()

    def stop(self) -> None:
        """No wide channel is watched here: forget everything."""
        self.active = False
        self.released = None
        self.seen, self.held, self.last = set(), {}, {}

    def took(self, message: dict, wide: bool) -> None:
        """A message arrived; `wide`: it has a wide place (watched or not)."""
        if not self.active:
            return
        seq = message["seq"]
        if self.released is not None and seq <= self.released:
            return  # late: subscribers behind it read it from the database
        self.seen.add(seq)
        if wide:
            self.held[seq] = message
        if len(self.seen) > SEEN_LIMIT:
            self._give_up()
        elif wide:
            self.wake()

    def wake(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._release_all())

    async def _release_all(self) -> None:
        waits = iter(RETRY_SECONDS)
        while self.held and self.active:
            self._again = False
            try:
                top = await database_sync_to_async(ordering.horizon)()
            except Exception as error:
                log.warning("could not read the commit horizon: %s", error)
                top = None
            if top is not None and self.released is not None and top > self.released:
                await self._release(top)
                waits = iter(RETRY_SECONDS)
            if self.held and not self._again:
                await asyncio.sleep(next(waits, RETRY_SECONDS[-1]))

    async def _release(self, top: int) -> None:
        """Hand on every held event up to `top`, in id order."""
        done = self.released
        for seq in sorted(s for s in self.seen if s <= top):
            if seq > done + 1:
                self._skipped(seq - 1)
            done = seq
            message = self.held.pop(seq, None)
            if message is None:
                continue
            watched = set(self.watched())
            places = {}
            for channel in message["places"]:
                if ordering.is_wide(channel):
                    if channel in watched:
                        places[channel] = self.last.get(channel, self.released)
                    self.last[channel] = seq
            if places:
                await self.hand(message, places)
        self.seen = {s for s in self.seen if s > top}
        if top > done:
            # Ids at the end that no message brought: subscribers read them.
            self._skipped(top)
            self.lost(self.watched(), top)
        self.released = top

    def _skipped(self, through: int) -> None:
        """Ids up to `through` came in no message: the next event released on
        any wide channel says its channel may have had one there."""
        for channel in {*self.last, *self.watched()}:
            self.last[channel] = max(self.last.get(channel, 0), through)

    def _give_up(self) -> None:
        log.warning("the commit horizon stays behind %s events; subscribers catch up", SEEN_LIMIT)
        top = max(self.seen)
        self.held.clear()
        self.seen.clear()
        self.released = top
        self._skipped(top)
        self.lost(self.watched(), top)

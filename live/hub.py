"""Process-local fan-out: one layer message per event (or per batch of events)
and process, not one per socket.

Each server process has one `Hub`, on its event loop. The hub listens on one
channel-layer channel of its own and, while it has any local subscriber,
is in the one events group that every event is published to, once, whatever
the channels it is on (events.record). The hub hands the event to the local
subscriptions of each of its channels, building each channel's frame from
the one text the message carries. An event therefore costs one layer message
per process that has subscribers, and nothing in a process that has none.

Subscriptions keep their meaning: each has a cursor, fills gaps from the
database, narrows and budgets per subscriber (live.subscription). The hub
only carries messages; it reads nothing from the database for one, but the
commit horizon before it hands on a wide channel's event (on PostgreSQL,
where ids may commit out of order across sessions: live.order).

The layer may fail (Redis restarting). The hub then logs, retries with a
backoff, joins the group again once the layer answers (a restarted Redis has
forgotten it), and asks every local subscription to catch up from the
database, where every committed event is. No socket is closed for it.
"""

import asyncio
import logging
from typing import Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from live import ordering, stats
from live.events import EVENTS_GROUP, heads_after, on_channel
from live.order import CommitOrder

log = logging.getLogger("switchboard.hub")

# Groups are joined again this often, so a layer that lost them without an
# error (a Redis restarted between two reads) is repaired within this time.
REJOIN_SECONDS = 30.0
BACKOFF_MAX = 5.0


class Listener(Protocol):
    """A subscription, as the hub sees it (live.subscription)."""

    # Its cursor, or None while it is catching up from the database.
    position: int | None

    async def deliver(self, message: dict) -> None: ...

    def lost(self) -> None: ...

    def head_seen(self, head: int) -> None: ...


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.members: dict[str, dict[Listener, None]] = {}
        # Whether the hub is in the events group (it is while it has members).
        self.listening = False
        self.channel_name: str | None = None
        self.healthy = True
        self._named = asyncio.Event()
        # Wide channels wait for the commit horizon where ids may commit out
        # of order across sessions (live.order); elsewhere nothing waits.
        self.order = None
        if ordering.reorders():
            self.order = CommitOrder(self._hand, self._behind, self._wide)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="switchboard-hub")

    # --- subscriptions --------------------------------------------------------------

    async def join(self, channel: str, listener: Listener) -> None:
        """Start handing `channel`'s messages to `listener` (in publish order);
        returns once the hub hears every event published from then on."""
        self.members.setdefault(channel, {})[listener] = None
        if not self.listening:
            await self._named.wait()
            await self._add()
        if self.order is not None and ordering.is_wide(channel):
            # In the group first: what commits after the horizon it reads is heard.
            await self.order.start()

    async def leave(self, channel: str, listener: Listener) -> None:
        members = self.members.get(channel)
        if members is None:
            return
        members.pop(listener, None)
        if members:
            return
        del self.members[channel]
        if self.order is not None and ordering.is_wide(channel) and not self._wide():
            self.order.stop()
        if not self.members and self.listening:
            self.listening = False
            try:
                await self.layer.group_discard(EVENTS_GROUP, self.channel_name)
            except Exception as error:
                # Harmless: messages nobody here watches are dropped.
                log.warning("could not leave the events group: %s", error)

    async def _add(self) -> None:
        try:
            await self.layer.group_add(EVENTS_GROUP, self.channel_name)
        except Exception as error:
            # The subscription still works: the keeper joins the group when the
            # layer answers again, and asks subscribers to catch up.
            self._failed(f"could not join the events group: {error}")
            return
        if self.members:
            self.listening = True
        else:  # the last subscriber left while we waited
            try:
                await self.layer.group_discard(EVENTS_GROUP, self.channel_name)
            except Exception:
                pass

    # --- the layer ------------------------------------------------------------------

    def _failed(self, why: str) -> None:
        stats.live.layer_failed()
        if self.healthy:
            log.warning("channel layer unavailable (%s); live frames wait, nothing is lost", why)
        self.healthy = False

    async def _rejoin(self) -> None:
        if self.members:
            await self.layer.group_add(EVENTS_GROUP, self.channel_name)
            self.listening = bool(self.members)

    async def _keep(self) -> None:
        """Join every group again now and then, and soon after a failure; when
        the layer answers again, every subscription catches up from the database."""
        backoff = 0.1
        while True:
            await asyncio.sleep(REJOIN_SECONDS if self.healthy else backoff)
            try:
                await self._rejoin()
            except Exception as error:
                self._failed(str(error) or type(error).__name__)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = 0.1
            if not self.healthy:
                log.warning("channel layer answers again; subscribers catch up")
                self.healthy = True
                for members in list(self.members.values()):
                    for listener in list(members):
                        listener.lost()

    async def _watch_heads(self) -> None:
        """Now and then, ask the database whether any watched channel has events
        that no message brought: a message the layer lost with nothing after
        it, or events written by a process the layer does not reach (a command
        with the in-memory layer). Subscribers behind them catch up."""
        suspects: dict[str, int] = {}
        while True:
            await asyncio.sleep(settings.SWITCHBOARD["HEAD_CHECK_SECONDS"])
            # A head seen last round that a subscriber has still not reached was
            # not merely on its way: catch that subscriber up.
            for channel, head in suspects.items():
                for listener in list(self.members.get(channel, ())):
                    listener.head_seen(head)
            cursors = {}
            for channel, members in self.members.items():
                positions = (listener.position for listener in members)
                idle = [position for position in positions if position is not None]
                if idle:
                    cursors[channel] = min(idle)
            suspects = {}
            if not cursors:
                continue
            try:
                suspects = await database_sync_to_async(heads_after)(cursors)
            except Exception as error:
                log.warning("could not check the channels' heads: %s", error)

    async def _run(self) -> None:
        backoff = 0.1
        while self.channel_name is None:
            try:
                self.channel_name = await self.layer.new_channel("switchboard.hub.")
            except Exception as error:
                self._failed(str(error) or type(error).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        self._named.set()
        loop = asyncio.get_running_loop()
        keeper = loop.create_task(self._keep())
        watcher = loop.create_task(self._watch_heads())
        backoff = 0.1
        try:
            while True:
                try:
                    message = await self.layer.receive(self.channel_name)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self._failed(str(error) or type(error).__name__)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = 0.1
                await self.deliver(message)
        finally:
            keeper.cancel()
            watcher.cancel()

    async def deliver(self, message: dict) -> None:
        """Hand the event of a layer message (or each of the events it packs:
        events.pack) to every local subscription of each of its channels (of
        a wide channel, once the commit horizon has passed it)."""
        stats.live.took_layer_message()
        if message.get("type") == "sb.events":
            for one in message["events"]:
                await self._deliver(one)
        else:
            await self._deliver(message)

    async def _deliver(self, message: dict) -> None:
        order = self.order
        places = message["places"]
        if order is None:
            await self._hand(message, places)
            return
        narrow = {c: prev for c, prev in places.items() if not ordering.is_wide(c)}
        await self._hand(message, narrow)
        order.took(message, len(narrow) < len(places))

    async def _hand(self, message: dict, places: dict[str, int]) -> None:
        for channel, prev in places.items():
            members = self.members.get(channel)
            if not members:
                continue
            relayed = on_channel(message, channel, prev)
            for listener in list(members):
                try:
                    await listener.deliver(relayed)
                except Exception:
                    log.exception("could not relay seq %s", message.get("seq"))

    def _wide(self) -> list[str]:
        return [channel for channel in self.members if ordering.is_wide(channel)]

    def _behind(self, channels: list[str], head: int) -> None:
        for channel in channels:
            for listener in list(self.members.get(channel, ())):
                listener.head_seen(head)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (made on first use)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for old in [old for old in _hubs if old.is_closed()]:
            del _hubs[old]
        hub = _hubs[loop] = Hub()
    return hub

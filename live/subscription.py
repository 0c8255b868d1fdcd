"""One channel on one socket: its cursor, its inbox, gaps and catch-up.

A subscription relays live messages in order from its cursor, the seq of the
last event relayed. A message whose `prev` is past the cursor means
something went missing on the way (a layer that dropped it, two writers
whose messages crossed, a layer restart): the subscription then catches up
from the database, in order, before it goes on. While it catches up, or
while its socket holds live frames back (a reply being made) or does not
read (paused), live messages wait in its inbox, or past INBOX_LIMIT are
dropped and read from the database instead. The hub only hands it messages
(`deliver`), tells it when the layer may have lost some (`lost`), and tells
it the heads it found in the database (`head_seen`).
"""

import asyncio
import functools
import itertools
import logging
from collections import deque
from typing import Any, Protocol

from channels.db import database_sync_to_async

from live import events, protocol, streams

log = logging.getLogger("switchboard.consumers")

# Live messages held for a subscription while it catches up; past this it
# reads them from the database instead.
INBOX_LIMIT = 1000
# Catching up: frames a page holds at most, and about how many bytes.
CATCH_UP_PAGE_MAX = 1000
CATCH_UP_BYTES = 1 << 20
RETRY_MAX = 10.0


class Socket(Protocol):
    """What a subscription needs of its socket (live.consumers)."""

    user: Any
    paused: bool
    closing: bool
    holding: int
    subs: dict

    def reads_all(self, kind: str) -> bool: ...

    async def send_frame(self, text: str) -> None: ...

    def spawn(self, coroutine) -> None: ...


class Subscription:
    """`busy` while it catches up from the database: live messages then wait
    in `inbox` (or, past INBOX_LIMIT or while the socket is paused, are
    dropped and `behind` is set, to be read from the database instead)."""

    def __init__(self, socket: Socket, ref: streams.ChannelRef, narrowing) -> None:
        self.socket = socket
        self.ref = ref
        self.narrowing = narrowing
        self.relay = ref.stream.relay(narrowing)
        self.cursor = 0
        self.busy = True
        self.behind = False
        self.counted = False
        self.need = 0
        self.inbox: deque = deque()
        self.flusher: asyncio.TimerHandle | None = None
        self.ticker: asyncio.Task | None = None

    @property
    def current(self) -> bool:
        """Still the socket's subscription of its channel, and the socket open."""
        return self.socket.subs.get(self.ref.name) is self and not self.socket.closing

    # --- from the hub ----------------------------------------------------------------

    async def deliver(self, message: dict) -> None:
        if not self.current:
            return
        socket = self.socket
        if socket.paused or self.busy or socket.holding:
            if socket.paused or len(self.inbox) >= INBOX_LIMIT:
                self.behind = True  # read from the database when it can go on
            else:
                self.inbox.append(message)
            return
        if message["seq"] <= self.cursor:
            return
        if message["prev"] > self.cursor:
            self.inbox.append(message)
            self.catch_up_later()
            return
        await self.relay_live(message)

    def lost(self) -> None:
        self.behind = True
        self.catch_up_later()

    def head_seen(self, head: int) -> None:
        """The database holds events up to `head`, seen a round ago: if no
        message brought them, catch up."""
        if head > self.cursor and not self.busy:
            self.lost()

    @property
    def position(self) -> int | None:
        """The cursor, for the hub's head check (None while catching up)."""
        return None if self.busy else self.cursor

    # --- relaying --------------------------------------------------------------------

    async def relay_live(self, message: dict) -> None:
        if not self.current:
            return  # unsubscribed (or closing): nothing more goes out for it
        self.cursor = message["seq"]
        socket = self.socket
        shared = self.ref.stream.shared_key and not socket.reads_all(self.ref.kind)
        if shared and message.get("owner_id") != socket.user.pk:
            return  # another owner's event on a shared channel
        frames, flush_after = self.relay.live(message)
        for frame in frames:
            await socket.send_frame(frame)
        if flush_after is not None and self.flusher is None:
            loop = asyncio.get_running_loop()
            self.flusher = loop.call_later(flush_after, self.flush_later)

    def flush_later(self) -> None:
        self.flusher = None
        if self.current:
            self.socket.spawn(self.flush())

    async def flush(self) -> None:
        for frame in self.relay.flush():
            await self.socket.send_frame(frame)

    async def release(self) -> None:
        """The socket relays again after a reply: relay what waited meanwhile."""
        if self.inbox and not self.busy:
            self.busy = True
            await self.settle()

    def resume(self) -> None:
        """The socket reads again: catch up from where it stopped."""
        if self.behind or self.inbox:
            self.behind = True
            self.catch_up_later()

    def end(self) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
        if self.flusher is not None:
            self.flusher.cancel()
        self.inbox.clear()

    # --- catching up -----------------------------------------------------------------

    def catch_up_later(self) -> None:
        """Read what the subscription missed from the database, in a task of its own."""
        if self.busy:
            self.behind = True  # the running catch-up goes round once more
            return
        if not self.current or self.socket.paused:
            return
        self.busy = True
        self.socket.spawn(self.settle())

    async def settle(self) -> None:
        """Catch up from the database when behind, then relay what queued
        meanwhile, until the subscription is live again. Errors are logged
        and retried; they never end the connection."""
        delay = 0.5
        try:
            while self.current and not self.socket.paused:
                stuck = False
                if self.behind:
                    self.behind = False
                    before = self.cursor
                    try:
                        await self.catch_up()
                    except Exception:
                        log.exception("could not read %s after seq %s", self.ref.name, self.cursor)
                        self.behind = True
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, RETRY_MAX)
                        continue
                    # Nothing stored before the next queued message that we have
                    # not read: take that message as it is, rather than wait.
                    stuck = self.cursor == before and not self.behind
                while self.inbox and not self.behind and not self.socket.paused:
                    message = self.inbox.popleft()
                    if message["seq"] <= self.cursor:
                        continue
                    if message["prev"] > self.cursor and not stuck:
                        self.inbox.appendleft(message)
                        self.behind = True
                        break
                    stuck = False
                    await self.relay_live(message)
                if not self.behind:
                    return
        finally:
            if self.socket.subs.get(self.ref.name) is self:
                self.busy = False

    async def catch_up(self) -> None:
        """Relay every stored event of the channel after the cursor, in order.

        Pages start at the stream's `backlog_page` and then hold about
        CATCH_UP_BYTES of frames like the last page's: many small events
        (steps, progress) come in few round trips, large output chunks in
        small pages."""
        stream, socket = self.ref.stream, self.socket
        limit = stream.backlog_page
        # Who the read is for: one user's events on a shared channel, else anyone's.
        reader = socket.user.pk if stream.shared_key and not socket.reads_all(stream.kind) else None
        need, self.need = self.need or next(TICKS), 0
        while socket.subs.get(self.ref.name) is self:
            frames, texts, cursor, joined = await shared_reads.read(
                socket.user, self.ref, reader, self.cursor, limit, need
            )
            if cursor is None:
                await self.start_again()
                return
            if cursor == self.cursor and joined and self.inbox:
                # Messages wait, and a read that began before they came found
                # nothing: read again, or a gap before them would be taken as
                # one that nothing stored can fill (see settle).
                need = next(TICKS)
                continue
            if cursor == self.cursor:
                return
            size = 0
            for frame, text in zip(frames, texts, strict=True):
                if socket.paused or socket.closing:
                    self.behind = True
                    return
                if not self.current:
                    return  # unsubscribed: not another frame of this page
                narrowed = stream.narrow(frame, self.narrowing)
                if narrowed is not None:
                    if narrowed is not frame:
                        text = events.dumps(narrowed)
                    size += len(text)
                    await socket.send_frame(text)
                self.cursor = frame["seq"]
            self.cursor = cursor
            if frames:
                fits = CATCH_UP_BYTES * len(frames) // max(size, 1)
                limit = max(stream.backlog_page, min(fits, CATCH_UP_PAGE_MAX))

    async def start_again(self) -> None:
        """Events after the cursor were deleted while the subscription was
        behind (`prune` ran while its socket did not read): it starts again
        from a fresh snapshot, with a `subscribed` frame that says `reset`,
        as a client resuming from there would."""
        socket, ref = self.socket, self.ref
        opened = await database_sync_to_async(streams.open_channel)(
            socket.user, ref, self.cursor, self.narrowing
        )
        if not self.current:
            return
        if not opened.reset:
            # Its session is gone: no snapshot to start from; read on past the loss.
            kept_after = await database_sync_to_async(streams.kept_after)(ref.name)
            self.cursor = max(self.cursor, kept_after)
            return
        self.cursor = opened.cursor
        described = ref.stream.describe_filter(self.narrowing)
        frame = protocol.subscribed(ref.name, opened.cursor, opened.snapshot, True, described)
        await socket.send_frame(events.dumps(frame))


class SharedReads:
    """Catch-up reads that sockets asking at the same moment share.

    After a restart, many sockets resume the same channel from the same seq
    (a page watched by many, reconnecting together): one database read and
    one JSON text per frame serve them all. A socket joins a read in flight
    only if that read began after the socket's need arose (`need`, a tick of
    TICKS: for a subscribe, taken once it listens), so the read's snapshot
    holds everything committed before then; what commits later reaches the
    socket live (and a joined read that finds nothing while messages wait is
    read again: see catch_up).
    """

    def __init__(self) -> None:
        self.pending: dict[tuple, tuple[int, asyncio.Task]] = {}

    async def read(self, user, ref, reader, since: int, limit: int, need: int):
        """(frames, their JSON texts, the cursor after them, whether the read
        was another socket's)."""
        key = (ref.name, reader, since, limit)
        pending = self.pending.get(key)
        if pending is not None and pending[0] > need:
            return (*await asyncio.shield(pending[1]), True)
        task = asyncio.get_running_loop().create_task(self._read(user, ref, since, limit))
        self.pending[key] = (next(TICKS), task)
        task.add_done_callback(functools.partial(self._done, key))
        return (*await asyncio.shield(task), False)

    def _done(self, key: tuple, task: asyncio.Task) -> None:
        pending = self.pending.get(key)
        if pending is not None and pending[1] is task:
            del self.pending[key]
        if not task.cancelled():
            task.exception()  # retrieved: each reader logs its own failure

    @staticmethod
    async def _read(user, ref, since: int, limit: int):
        def read():
            frames, cursor = streams.read_visible(user, ref, since, limit)
            # Asked after the read: had events after `since` gone before it
            # (or between its statements), this sees it. None: start again.
            if since < streams.kept_after(ref.name):
                return [], [], None
            return frames, [events.dumps(frame) for frame in frames], cursor

        return await database_sync_to_async(read)()


# Orders the moments a socket needs a read and the moments reads begin.
TICKS = itertools.count(1)
shared_reads = SharedReads()

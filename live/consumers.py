"""The one WebSocket endpoint, /ws/: many subscriptions on one connection.

The consumer speaks the protocol and nothing else. Frames from the client
pass the socket's guards (live.guards), are parsed into typed frames
(live.protocol) and handed to their action's handler. Live messages reach
its subscriptions from the process's hub (live.hub); each subscription keeps
its own cursor, inbox and catch-up (live.subscription). A socket that does
not read is paused (live.flow) and caught up once it has drained, so the
server never buffers more than a bound for it. One watchdog per process
closes silent and slow sockets and applies revoked identities and changed
rights (live.watchdog).
"""

import asyncio
import logging
import time

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from live import events, frames, guards, protocol, stats, streams
from live.auth import allowed_user, identity_of
from live.errors import Refused
from live.flow import EXTENSION as FLOW
from live.hub import get_hub
from live.subscription import TICKS, Subscription
from live.watchdog import Rights, watchdog

log = logging.getLogger("switchboard.consumers")


class SwitchboardConsumer(AsyncWebsocketConsumer):
    # No layer channel per socket: the process's hub receives for all of them.
    channel_layer_alias = "switchboard.none"
    accepted = False
    closing = False
    paused = False
    holding = 0

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if not await database_sync_to_async(allowed_user)(self.user, self.scope.get("auth")):
            await self.close()  # before accept: the handshake is refused with 403
            return
        self.rights = await database_sync_to_async(Rights.of)(self.user)
        # The user object the user's other sockets share (see Rights.of).
        self.user = self.scope["user"] = self.rights.user
        self.identity = identity_of(self.scope)
        self.subs: dict[str, Subscription] = {}
        self.tasks: set[asyncio.Task] = set()
        self.hub = get_hub()
        conf = settings.SWITCHBOARD
        self.flood = guards.FloodGuard(conf["RATE_PER_SECOND"], conf["RATE_BURST"])
        self.liveness = guards.Liveness(time.monotonic())
        if not guards.admission(stats.live.connections, conf["MAX_CONNECTIONS"]):
            # Full: say when to come back (daphne drops close reasons, so a frame).
            await self.accept()
            frame = protocol.overloaded(conf["MAX_CONNECTIONS"], conf["RETRY_AFTER"])
            await self.send(text_data=events.dumps(frame))
            await self.close(code=guards.CLOSE_OVERLOADED)
            return
        await self.accept()
        self.accepted = True
        stats.live.connected()
        flow = (self.scope.get("extensions") or {}).get(FLOW)
        if flow is not None:
            flow.attach(self.on_pause, self.on_resume)
        watchdog.watch(self)

    async def disconnect(self, code) -> None:
        watchdog.forget(self)
        if not self.accepted:
            return
        self.accepted = False
        self.closing = True
        stats.live.disconnected()
        if self.paused:
            stats.live.resumed_socket()
        for task in list(self.tasks):
            task.cancel()
        for channel in list(self.subs):
            await self.drop(channel)

    def reads_all(self, kind: str) -> bool:
        return kind in self.rights.reads_all

    async def rights_changed(self, rights: Rights) -> None:
        """The user's permissions or groups changed: go on with the new ones,
        and end each subscription the user may no longer see (an `error`
        naming the channel), as a new subscribe would be refused."""
        self.rights, self.user = rights, rights.user
        self.scope["user"] = rights.user
        for channel, sub in list(self.subs.items()):
            try:
                await database_sync_to_async(streams.check_access)(self.user, sub.ref)
            except streams.ChannelError as error:
                await self.drop(channel)
                error.extra["channel"] = channel
                await self.send_error(None, error)

    # --- frames from the client -------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.closing:
            return  # frames still queued behind our close
        self.liveness.heard()
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        too_large = guards.frame_size(size, settings.SWITCHBOARD["MAX_FRAME_BYTES"])
        if too_large is not None:
            await self.send_error(None, too_large)
            await self.close(code=guards.CLOSE_TOO_LARGE)
            return
        admitted, refusal, close_code = self.flood.admit()
        if not admitted:
            if close_code is not None:
                await self.close(code=close_code)
            elif refusal is not None:
                await self.send_error(None, refusal)
            return
        frame_id = None
        try:
            raw = protocol.parse_json(text_data)
            frame_id = protocol.frame_id(raw)
            frame = protocol.parse_action(raw)
            await protocol.handler_of(frame)(self, frame, frame_id)
        except Refused as error:
            await self.send_error(frame_id, error)
        except Exception:
            log.exception("frame failed")
            await self.send_error(
                frame_id, Refused("the server could not do that", code="internal")
            )
        finally:
            await self.release()

    async def do_ping(self, frame: protocol.Ping, frame_id) -> None:
        await self.reply(frame_id, protocol.pong(frame.ts))

    async def do_subscribe(self, frame: protocol.Subscribe, frame_id) -> None:
        channel, since = frame.channel, frame.since
        ref = streams.parse(channel)
        narrowing = ref.stream.parse_filter(frame.filter)
        if channel in self.subs:
            await self.drop(channel)
        sub = Subscription(self, ref, narrowing)
        self.subs[channel] = sub
        # Listen first: nothing committed after the cursor is read can be missed.
        await self.hub.join(channel, sub)
        sub.need = next(TICKS)  # a catch-up read begun after this may serve it
        try:
            opened = await database_sync_to_async(streams.open_channel)(
                self.user, ref, since, narrowing
            )
        except BaseException:
            await self.drop(channel)
            raise
        if self.subs.get(channel) is not sub:
            return  # unsubscribed meanwhile
        sub.cursor = opened.cursor
        sub.counted = True
        stats.live.subscribed(channel)
        described = ref.stream.describe_filter(narrowing)
        reply = protocol.subscribed(
            channel, opened.cursor, opened.snapshot, opened.reset, described
        )
        await self.reply(frame_id, reply)
        if ref.kind == "system":
            # Figures every few seconds besides its stored events (system.alert).
            sub.ticker = asyncio.create_task(self.tick_stats(sub))
        sub.behind = since is not None and not opened.reset
        await sub.settle()

    async def do_unsubscribe(self, frame: protocol.Unsubscribe, frame_id) -> None:
        was = frame.channel in self.subs
        await self.drop(frame.channel)
        await self.reply(frame_id, protocol.unsubscribed(frame.channel, was))

    async def hold(self, work, *args):
        """Run `work(*args)` in a database thread while live frames wait, so
        that the reply to a frame goes out before the events it caused."""
        self.holding += 1
        try:
            return await database_sync_to_async(work)(*args)
        finally:
            self.holding -= 1

    async def release(self) -> None:
        """Relay what waited while a reply was being made."""
        if self.holding or self.closing:
            return
        for sub in list(self.subs.values()):
            await sub.release()

    # --- live messages, from the hub ----------------------------------------------

    async def dispatch(self, message) -> None:
        # Skip the base class's database hop before every message: handlers that
        # touch the database do it through database_sync_to_async, which closes
        # stale connections itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- a socket that does not read ----------------------------------------------

    def on_pause(self) -> None:
        """Its transport holds the bound: send it nothing more for now."""
        if not self.paused:
            self.paused = True
            self.liveness.paused_at = time.monotonic()
            stats.live.paused_socket()

    def on_resume(self) -> None:
        """It has drained: catch each subscription up from where it stopped."""
        if not self.paused:
            return
        self.paused = False
        self.liveness.paused_at = None
        stats.live.resumed_socket()
        if self.closing:
            return
        for sub in list(self.subs.values()):
            sub.resume()

    # --- the system channel ---------------------------------------------------------

    async def tick_stats(self, sub: Subscription) -> None:
        interval = settings.SWITCHBOARD["STATS_INTERVAL"]
        while True:
            await asyncio.sleep(interval)
            try:
                figures = await database_sync_to_async(stats.snapshot)()
            except Exception:
                log.exception("could not read the figures for the system channel")
                continue
            # Not stored: it carries the subscription's cursor, so a client
            # that resumes from it misses no system.alert.
            frame = events.event_frame("system", "system.stats", sub.cursor, figures["ts"], figures)
            await self.send_frame(events.dumps(frame))

    # --- sending --------------------------------------------------------------------

    async def drop(self, channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if sub is None:
            return
        if sub.counted:
            stats.live.unsubscribed(channel)
        sub.end()
        await self.hub.leave(channel, sub)

    async def send_frame(self, text: str) -> None:
        if self.closing:
            return
        if self.paused:
            stats.live.dropped()
            return
        try:
            await self.send(text_data=frames.sendable(text))
        except Exception as error:
            # The peer is gone (daphne refuses sends on a closed socket), or the
            # frame could not go out. Either way nothing more can be sent on
            # this socket: close it, so that a client still there reconnects
            # and resumes, rather than wait on a socket that stays silent.
            if not self.closing:
                log.warning(
                    "closing a socket after a failed send (%s): %s", guards.CLOSE_SEND_FAILED, error
                )
                try:
                    await self.close(code=guards.CLOSE_SEND_FAILED)
                except Exception:
                    self.closing = True
            return
        stats.live.sent()

    async def close(self, code=None, reason=None) -> None:
        if self.closing and self.accepted:
            return
        self.closing = True
        await super().close(code=code, reason=reason)

    async def reply(self, frame_id, body: dict) -> None:
        await self.send_frame(events.dumps(protocol.reply(frame_id, body)))

    async def send_error(self, frame_id, error: Refused) -> None:
        extra = {}
        if isinstance(error, streams.ChannelError):
            extra["available_channels"] = streams.available_channels()
        await self.reply(frame_id, protocol.error(error, **extra))

"""The one WebSocket endpoint, /ws/: many subscriptions on one connection.

The consumer speaks the protocol. Live messages reach it from the process's
hub (live.hub), one layer message per process, already serialized
(events.record); each subscription relays them in order from its cursor, the
seq of the last event relayed. A message whose `prev` is past the cursor
means something went missing on the way (a layer that dropped it, two
writers whose messages crossed, a layer restart): the subscription then
catches up from the database, in order, before it goes on. A socket that
does not read is paused (live.flow) and caught up the same way once
it has drained, so the server never buffers more than a bound for it.
"""

import asyncio
import functools
import itertools
import json
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from live import events, frames, stats
from live.auth import allowed_user, identity_of, still_valid
from live.errors import Refused
from live.flow import EXTENSION as FLOW
from live.hub import get_hub
from live.models import Event
from live.validation import text_problem, whole_number
from sessions_app import access, services, streams

log = logging.getLogger("switchboard.consumers")

ACTIONS = ("subscribe", "unsubscribe", "ping", "cancel_task")
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
# A frame's `id` and a ping's `ts` are echoed: at most this long, if strings.
PING_TS_CHARS = 256
# A flooding client is dropped when its refused frames, forgiven at
# FLOOD_FORGIVE a second, pile up past FLOOD_LIMIT: sending at twice the rate
# limit trips it within seconds, however fast the server drains the frames.
FLOOD_LIMIT = 500
FLOOD_FORGIVE = 50
# Live messages held for a subscription while it catches up; past this it
# reads them from the database instead.
INBOX_LIMIT = 1000
# Catching up: frames a page holds at most, and about how many bytes.
CATCH_UP_PAGE_MAX = 1000
CATCH_UP_BYTES = 1 << 20
RETRY_MAX = 10.0


@dataclass(eq=False)
class Subscription:
    """One channel on one connection: its cursor and its live state.

    `busy` while it catches up from the database: live messages then wait in
    `inbox` (or, past INBOX_LIMIT or while the socket is paused, are dropped
    and `behind` is set, to be read from the database instead).
    """

    consumer: "SwitchboardConsumer"
    ref: streams.ChannelRef
    narrowing: Any
    relay: streams.Relay
    cursor: int = 0
    busy: bool = True
    behind: bool = False
    counted: bool = False
    need: int = 0
    inbox: deque = field(default_factory=deque)
    flusher: asyncio.TimerHandle | None = None
    ticker: asyncio.Task | None = None

    async def deliver(self, message: dict) -> None:
        await self.consumer.on_message(self, message)

    def lost(self) -> None:
        self.behind = True
        self.consumer.catch_up_later(self)


class Watchdog:
    """One task per process closes connections silent for too long (not one per socket)."""

    def __init__(self) -> None:
        self.connections: dict[SwitchboardConsumer, None] = {}
        self.task: asyncio.Task | None = None

    def watch(self, consumer: "SwitchboardConsumer") -> None:
        self.connections[consumer] = None
        if self.task is None or self.task.done() or self.task.get_loop().is_closed():
            self.task = asyncio.get_running_loop().create_task(self.run())

    def forget(self, consumer: "SwitchboardConsumer") -> None:
        self.connections.pop(consumer, None)

    async def run(self) -> None:
        conf = settings.SWITCHBOARD
        timeout = conf["IDLE_TIMEOUT"]
        step = min(5.0, max(timeout / 4, 0.25), conf["IDENTITY_CHECK_SECONDS"])
        identities_checked = time.monotonic()
        while self.connections:
            await asyncio.sleep(step)
            now = time.monotonic()
            for consumer in list(self.connections):
                try:
                    await consumer.check(now, timeout)
                except Exception:
                    log.exception("connection check failed")
            if now - identities_checked >= conf["IDENTITY_CHECK_SECONDS"]:
                identities_checked = now
                try:
                    await self.check_identities()
                    await self.check_rights()
                except Exception:
                    log.exception("could not check the identities of open sockets")

    async def check_identities(self) -> None:
        """Close the sockets whose identity would be refused now: a deleted
        token, a deactivated user, a browser session logged out or no longer staff."""
        held = {consumer: consumer.identity for consumer in self.connections}
        valid = await database_sync_to_async(still_valid)(
            [identity for identity in held.values() if identity is not None]
        )
        for consumer, identity in held.items():
            if identity is not None and identity not in valid and consumer in self.connections:
                log.info("closing a connection whose identity was revoked (%s)", CLOSE_REVOKED)
                await consumer.close(code=CLOSE_REVOKED)

    async def check_rights(self) -> None:
        """Apply changed permissions and groups to open sockets: each user's
        rights are read again, and a socket whose user's changed drops the
        subscriptions its user may no longer see (see Rights)."""
        users = {c.user.pk for c in self.connections if c.accepted and not c.closing}
        if not users:
            return
        fresh = await database_sync_to_async(Rights.of_users)(users)
        for consumer in list(self.connections):
            rights = fresh.get(consumer.user.pk)
            if rights is not None and consumer.accepted and rights != consumer.rights:
                await consumer.rights_changed(rights)


@dataclass(frozen=True)
class Rights:
    """What a socket's user may do, as far as the socket is concerned; read
    at connect and again every IDENTITY_CHECK_SECONDS."""

    user: Any = field(compare=False)
    sees_all: bool
    changes_all: bool
    is_staff: bool

    @classmethod
    def of(cls, user) -> "Rights":
        return cls(user, access.sees_all(user), access.changes_all(user), user.is_staff)

    @classmethod
    def of_users(cls, ids: set[int]) -> dict[int, "Rights"]:
        from django.contrib.auth import get_user_model

        return {user.pk: cls.of(user) for user in get_user_model().objects.filter(pk__in=ids)}


watchdog = Watchdog()


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
        self.identity = identity_of(self.scope)
        self.subs: dict[str, Subscription] = {}
        self.tasks: set[asyncio.Task] = set()
        self.hub = get_hub()
        conf = settings.SWITCHBOARD
        self.bucket = streams.TokenBucket(conf["RATE_PER_SECOND"], conf["RATE_BURST"])
        self.refused, self.refused_at = 0.0, time.monotonic()
        self.last_heard = time.monotonic()
        self.paused_at: float | None = None
        limit = conf["MAX_CONNECTIONS"]
        if limit and stats.live.connections >= limit:
            # Full: say when to come back (daphne drops close reasons, so a frame).
            await self.accept()
            await self.send(
                text_data=events.dumps(
                    {
                        "type": "error",
                        "code": "overloaded",
                        "message": f"this server has {limit} sockets; come back later",
                        "retry_after": conf["RETRY_AFTER"],
                    }
                )
            )
            await self.close(code=4013)  # as 1013 "try again later", which autobahn refuses
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
            stats.live.paused -= 1
        watchdog.forget(self)
        for task in list(self.tasks):
            task.cancel()
        for channel in list(self.subs):
            await self.drop(channel)

    async def check(self, now: float, timeout: float) -> None:
        """The watchdog's round: silence, and sockets that stopped reading."""
        if now - self.last_heard > timeout:
            log.info("closing a connection silent for over %s s", timeout)
            await self.close(code=CLOSE_IDLE)
        elif (
            self.paused_at is not None and now - self.paused_at > settings.SWITCHBOARD["SLOW_CLOSE"]
        ):
            log.info(
                "closing a connection that has not read for %.0f s (%s)",
                now - self.paused_at,
                CLOSE_SLOW,
            )
            await self.close(code=CLOSE_SLOW)

    @property
    def sees_all(self) -> bool:
        return self.rights.sees_all

    async def rights_changed(self, rights: Rights) -> None:
        """The user's permissions or groups changed: go on with the new ones,
        and end each subscription the user may no longer see (an `error`
        naming the channel), as a new subscribe would be refused."""
        self.rights, self.user = rights, rights.user
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
        self.last_heard = time.monotonic()
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        limit = settings.SWITCHBOARD["MAX_FRAME_BYTES"]
        if size > limit:
            await self.send_error(
                None, Refused(f"frames are limited to {limit} bytes", code="too_large")
            )
            await self.close(code=CLOSE_TOO_LARGE)
            return
        if not self.bucket.take():
            now = time.monotonic()
            forgiven = (now - self.refused_at) * FLOOD_FORGIVE
            self.refused_at = now
            self.refused = max(0.0, self.refused - forgiven) + 1
            if self.refused > FLOOD_LIMIT:
                await self.close(code=CLOSE_FLOOD)
            elif int(self.refused) % 100 == 1:
                await self.send_error(
                    None, Refused("too many frames; slow down", code="rate_limited")
                )
            return
        frame_id = None
        try:
            frame = parse_frame(text_data)
            frame_id = frame.get("id")
            if frame_id is not None and (
                isinstance(frame_id, bool)
                or not isinstance(frame_id, (str, int, float))
                or isinstance(frame_id, str)
                and len(frame_id) > PING_TS_CHARS
            ):
                frame_id = None
                raise Refused(
                    f"id must be a number or a string of at most {PING_TS_CHARS}", field="id"
                )
            action = frame.get("action")
            if not isinstance(action, str) or not action:
                raise Refused("every frame needs an action", field="action")
            if action not in ACTIONS:
                raise Refused(
                    f"unknown action {action[:50]!r}; known: {', '.join(ACTIONS)}", field="action"
                )
            await getattr(self, f"do_{action}")(frame, frame_id)
        except Refused as error:
            await self.send_error(frame_id, error)
        except Exception:
            log.exception("frame failed")
            await self.send_error(
                frame_id, Refused("the server could not do that", code="internal")
            )
        finally:
            await self.release()

    async def do_ping(self, frame: dict, frame_id) -> None:
        ts = frame.get("ts")
        if isinstance(ts, str) and len(ts) > PING_TS_CHARS or isinstance(ts, (dict, list)):
            raise Refused(f"ts must be a number or a string of at most {PING_TS_CHARS}", field="ts")
        await self.reply(frame_id, {"type": "pong", "ts": ts})

    async def do_subscribe(self, frame: dict, frame_id) -> None:
        channel = frame.get("channel")
        if not isinstance(channel, str) or not channel:
            raise Refused("subscribe needs a channel", field="channel")
        since = whole_number(frame.get("since"), "since")
        ref = streams.parse(channel)
        stream = ref.stream
        narrowing = stream.parse_filter(frame.get("filter"))
        if channel in self.subs:
            await self.drop(channel)
        sub = Subscription(self, ref, narrowing, stream.relay(narrowing))
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
        reply = {"type": "subscribed", "channel": channel, "seq": opened.cursor}
        if opened.snapshot is not None:
            reply["snapshot"] = opened.snapshot
        if opened.reset:
            reply["reset"] = True
        described = stream.describe_filter(narrowing)
        if described is not None:
            reply["filter"] = described
        await self.reply(frame_id, reply)
        if ref.kind == "system":
            # Figures every few seconds besides its stored events (system.alert).
            sub.ticker = asyncio.create_task(self.tick_stats(sub))
        sub.behind = since is not None and not opened.reset
        await self.settle(sub)

    async def do_unsubscribe(self, frame: dict, frame_id) -> None:
        channel = frame.get("channel")
        if not isinstance(channel, str) or not channel:
            raise Refused("unsubscribe needs a channel", field="channel")
        was = channel in self.subs
        await self.drop(channel)
        await self.reply(
            frame_id, {"type": "unsubscribed", "channel": channel, "was_subscribed": was}
        )

    async def do_cancel_task(self, frame: dict, frame_id) -> None:
        task_id = whole_number(frame.get("task_id"), "task_id")
        if not task_id:
            raise Refused("cancel_task needs a task_id", field="task_id")
        # Live frames wait until the ack is out: "ack, then a task.update".
        self.holding += 1
        try:
            task, changed, update = await database_sync_to_async(self.cancel)(task_id)
        finally:
            self.holding -= 1
        await self.reply(
            frame_id,
            {
                "type": "ack",
                "action": "cancel_task",
                "task_id": str(task_id),
                "changed": changed,
                "status": task["status"],
                "cancel_requested": task["cancel_requested"],
            },
        )
        watching = {f"task:{task_id}", f"session:{task['session_id']}"} & set(self.subs)
        if update is not None and not watching:
            # Not subscribed to it: the task.update still follows the ack.
            await self.send_frame(update)

    async def release(self) -> None:
        """Relay what waited while a reply was being made."""
        if self.holding or self.closing:
            return
        for sub in list(self.subs.values()):
            if sub.inbox and not sub.busy:
                sub.busy = True
                await self.settle(sub)

    def cancel(self, task_id: int) -> tuple[dict, bool, str | None]:
        task = access.visible_tasks(self.user).select_related("session").filter(pk=task_id).first()
        if task is None:
            raise Refused(f"no task {task_id} that you can see", code="not_found", field="task_id")
        if not access.can_change(self.user, task.session):
            raise Refused("you may not cancel this task", code="forbidden", field="task_id")
        task, changed = services.cancel_task(task_id)
        update = None
        if changed:
            event = (
                Event.objects.filter(task_id=task_id, kind="task.update").order_by("-id").first()
            )
            update = events.dumps(events.frames_for([event], f"task:{task_id}")[0].frame)
        return task.as_json(), changed, update

    # --- live messages, from the hub ----------------------------------------------

    async def dispatch(self, message) -> None:
        # Skip the base class's database hop before every message: handlers that
        # touch the database do it through database_sync_to_async, which closes
        # stale connections itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def on_message(self, sub: Subscription, message: dict) -> None:
        if self.subs.get(sub.ref.name) is not sub or self.closing:
            return
        if self.paused or sub.busy or self.holding:
            if self.paused or len(sub.inbox) >= INBOX_LIMIT:
                sub.behind = True  # read from the database when it can go on
            else:
                sub.inbox.append(message)
            return
        if message["seq"] <= sub.cursor:
            return
        if message["prev"] > sub.cursor:
            sub.inbox.append(message)
            self.catch_up_later(sub)
            return
        await self.relay_live(sub, message)

    async def relay_live(self, sub: Subscription, message: dict) -> None:
        sub.cursor = message["seq"]
        key = sub.ref.stream.shared_key
        if key and not self.sees_all and message.get("owner_id") != self.user.pk:
            return
        frames, flush_after = sub.relay.live(message)
        for frame in frames:
            await self.send_frame(frame)
        if flush_after is not None and sub.flusher is None:
            loop = asyncio.get_running_loop()
            sub.flusher = loop.call_later(flush_after, self.flush_later, sub)

    def flush_later(self, sub: Subscription) -> None:
        sub.flusher = None
        if self.subs.get(sub.ref.name) is sub:
            self.spawn(self.flush(sub))

    async def flush(self, sub: Subscription) -> None:
        for frame in sub.relay.flush():
            await self.send_frame(frame)

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def catch_up_later(self, sub: Subscription) -> None:
        """Read what the subscription missed from the database, in a task of its own."""
        if sub.busy:
            sub.behind = True  # the running catch-up goes round once more
            return
        if self.subs.get(sub.ref.name) is not sub or self.closing or self.paused:
            return
        sub.busy = True
        self.spawn(self.settle(sub))

    async def settle(self, sub: Subscription) -> None:
        """Catch up from the database when behind, then relay what queued
        meanwhile, until the subscription is live again. Errors are logged
        and retried; they never end the connection."""
        delay = 0.5
        try:
            while self.subs.get(sub.ref.name) is sub and not self.paused and not self.closing:
                stuck = False
                if sub.behind:
                    sub.behind = False
                    before = sub.cursor
                    try:
                        await self.catch_up(sub)
                    except Exception:
                        log.exception("could not read %s after seq %s", sub.ref.name, sub.cursor)
                        sub.behind = True
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, RETRY_MAX)
                        continue
                    # Nothing stored before the next queued message that we have
                    # not read: take that message as it is, rather than wait.
                    stuck = sub.cursor == before and not sub.behind
                while sub.inbox and not sub.behind and not self.paused:
                    message = sub.inbox.popleft()
                    if message["seq"] <= sub.cursor:
                        continue
                    if message["prev"] > sub.cursor and not stuck:
                        sub.inbox.appendleft(message)
                        sub.behind = True
                        break
                    stuck = False
                    await self.relay_live(sub, message)
                if not sub.behind:
                    return
        finally:
            if self.subs.get(sub.ref.name) is sub:
                sub.busy = False

    async def catch_up(self, sub: Subscription) -> None:
        """Relay every stored event of the channel after the cursor, in order.

        Pages start at the stream's `backlog_page` and then hold about
        CATCH_UP_BYTES of frames like the last page's: many small events
        (steps, progress) come in few round trips, large output chunks in
        small pages."""
        stream = sub.ref.stream
        limit = stream.backlog_page
        # Who the read is for: one user's events on a shared channel, else anyone's.
        reader = self.user.pk if stream.shared_key and not self.sees_all else None
        need, sub.need = sub.need or next(TICKS), 0
        while self.subs.get(sub.ref.name) is sub:
            frames, texts, cursor, joined = await shared_reads.read(
                self.user, sub.ref, reader, sub.cursor, limit, need
            )
            if cursor == sub.cursor and joined and sub.inbox:
                # Messages wait, and a read that began before they came found
                # nothing: read again, or a gap before them would be taken as
                # one that nothing stored can fill (see settle).
                need = next(TICKS)
                continue
            if cursor == sub.cursor:
                return
            size = 0
            for frame, text in zip(frames, texts, strict=True):
                if self.paused or self.closing:
                    sub.behind = True
                    return
                narrowed = stream.narrow(frame, sub.narrowing)
                if narrowed is not None:
                    if narrowed is not frame:
                        text = events.dumps(narrowed)
                    size += len(text)
                    await self.send_frame(text)
                sub.cursor = frame["seq"]
            sub.cursor = cursor
            if frames:
                fits = CATCH_UP_BYTES * len(frames) // max(size, 1)
                limit = max(stream.backlog_page, min(fits, CATCH_UP_PAGE_MAX))

    # --- a socket that does not read ----------------------------------------------

    def on_pause(self) -> None:
        """Its transport holds the bound: send it nothing more for now."""
        if not self.paused:
            self.paused = True
            self.paused_at = time.monotonic()
            stats.live.paused += 1
            stats.live.pauses += 1

    def on_resume(self) -> None:
        """It has drained: catch each subscription up from where it stopped."""
        if not self.paused:
            return
        self.paused = False
        self.paused_at = None
        stats.live.paused -= 1
        if self.closing:
            return
        for sub in list(self.subs.values()):
            if sub.behind or sub.inbox:
                sub.behind = True
                self.catch_up_later(sub)

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

    # --- helpers ------------------------------------------------------------------

    async def drop(self, channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if sub is None:
            return
        if sub.counted:
            stats.live.unsubscribed(channel)
        if sub.ticker is not None:
            sub.ticker.cancel()
        if sub.flusher is not None:
            sub.flusher.cancel()
        sub.inbox.clear()
        await self.hub.leave(channel, sub)

    async def send_frame(self, text: str) -> None:
        if self.closing:
            return
        if self.paused:
            stats.live.dropped += 1
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
                    "closing a socket after a failed send (%s): %s", CLOSE_SEND_FAILED, error
                )
                try:
                    await self.close(code=CLOSE_SEND_FAILED)
                except Exception:
                    self.closing = True
            return
        stats.live.messages_sent += 1

    async def close(self, code=None, reason=None) -> None:
        if self.closing and self.accepted:
            return
        self.closing = True
        await super().close(code=code, reason=reason)

    async def reply(self, frame_id, body: dict) -> None:
        if frame_id is not None:
            body = {"type": body.pop("type"), "id": frame_id, **body}
        await self.send_frame(events.dumps(body))

    async def send_error(self, frame_id, error: Refused) -> None:
        body = {"type": "error", "code": error.frame_code, "message": error.message}
        if error.field:
            body["field"] = error.field
        body.update(error.extra)
        if isinstance(error, streams.ChannelError):
            body.setdefault("available_channels", streams.available_channels())
        await self.reply(frame_id, body)


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
            return frames, [events.dumps(frame) for frame in frames], cursor

        return await database_sync_to_async(read)()


# Orders the moments a socket needs a read and the moments reads begin.
TICKS = itertools.count(1)
shared_reads = SharedReads()


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_frame(text: str | None) -> dict:
    """A client frame as a JSON object, or `invalid_json`."""
    if text is None:
        raise Refused("frames must be JSON text, not binary", code="invalid_json")
    try:
        frame = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as error:
        raise Refused(f"not valid JSON: {str(error)[:200]}", code="invalid_json") from None
    if not isinstance(frame, dict):
        raise Refused("a frame must be a JSON object", code="invalid_json")
    # The text arrived as UTF-8, so only a \u escape can make a lone surrogate.
    if ("\\ud" in text or "\\uD" in text) and has_surrogate(frame):
        raise Refused("not valid Unicode: a lone surrogate (\\ud800-\\udfff)", code="invalid_json")
    return frame


def has_surrogate(value) -> bool:
    if isinstance(value, str):
        return text_problem(value.replace("\x00", "")) is not None
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_surrogate(item) for item in value)
    return False

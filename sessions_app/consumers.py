"""The one WebSocket endpoint, /ws/: many subscriptions on one connection.

Live frames arrive from the channel layer already serialized (events.record)
and are relayed as they are. Each subscription keeps a cursor, the seq of the
last event relayed; a frame whose `prev` is past the cursor means something
went missing on the way (a layer that dropped it, two writers whose messages
crossed), and the gap is filled from the database, in order, before going on.
"""

import asyncio
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from logs_app import services as log_services
from sessions_app import access, events, services, stats, streams
from sessions_app.auth import allowed_user
from sessions_app.models import Event

log = logging.getLogger("switchboard.consumers")

ACTIONS = ("subscribe", "unsubscribe", "ping", "cancel_task")
CLOSE_IDLE = 4408
CLOSE_FLOOD = 4429
# daphne (autobahn) sends only 1000 or 3000-4999 from an application, so not 1009.
CLOSE_TOO_LARGE = 4413
# A flooding client is dropped when its refused frames, forgiven at
# FLOOD_FORGIVE a second, pile up past FLOOD_LIMIT: sending at twice the rate
# limit trips it within seconds, however fast the server drains the frames.
FLOOD_LIMIT = 500
FLOOD_FORGIVE = 50
BACKLOG_PAGE = 500
# A log.append event carries up to LOG_FRAME_ENTRIES lines: page those finer.
LOG_BACKLOG_PAGE = 10
HEAD_CHECK_SECONDS = 20.0


class FrameError(Exception):
    def __init__(self, code: str, message: str, field: str | None = None, **extra) -> None:
        super().__init__(message)
        self.code, self.message, self.field, self.extra = code, message, field, extra


@dataclass
class Skipped:
    """Live log lines not sent to one subscriber, as one notice."""

    seq: int = 0
    count: int = 0
    errors: int = 0
    first_id: int = 0
    last_id: int = 0

    def add(self, seq: int, entries: list[dict]) -> None:
        self.seq = seq
        self.count += len(entries)
        self.errors += sum(1 for e in entries if e["levelno"] >= 40)
        ids = [int(e["id"]) for e in entries]
        self.first_id = min(ids + ([self.first_id] if self.first_id else []))
        self.last_id = max(ids + [self.last_id])


@dataclass
class Subscription:
    ref: streams.ChannelRef
    cursor: int
    log_filter: log_services.LogFilter = field(default_factory=log_services.LogFilter)
    ticker: asyncio.Task | None = None
    budget: "TokenBucket | None" = None
    skipped: Skipped | None = None
    flusher: asyncio.TimerHandle | None = None


class TokenBucket:
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


# Parsed log.append frames, shared by the filtered subscribers of one process.
_parsed: OrderedDict[tuple[str, int], dict] = OrderedDict()


def parsed_frame(message: dict) -> dict:
    key = (message["channel"], message["seq"])
    frame = _parsed.get(key)
    if frame is None:
        frame = _parsed[key] = json.loads(message["frame"])
        if len(_parsed) > 256:
            _parsed.popitem(last=False)
    return frame


def parse_seq(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise FrameError("invalid_action", f"{name} must be a whole number ≥ 0", name)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise FrameError("invalid_action", f"{name} must be a whole number ≥ 0", name)
    return value


class SwitchboardConsumer(AsyncWebsocketConsumer):
    closing = False

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if not await database_sync_to_async(allowed_user)(self.user, self.scope.get("auth")):
            await self.close()  # before accept: the handshake is refused with 403
            return
        self.sees_all = await database_sync_to_async(access.sees_all)(self.user)
        self.subs: dict[str, Subscription] = {}
        conf = settings.SWITCHBOARD
        self.bucket = TokenBucket(conf["RATE_PER_SECOND"], conf["RATE_BURST"])
        self.refused, self.refused_at = 0.0, time.monotonic()
        self.heads_checked = 0.0
        self.last_heard = time.monotonic()
        await self.accept()
        stats.live.connected()
        self.accepted = True
        self.watchdog = asyncio.create_task(self.idle_watch(conf["IDLE_TIMEOUT"]))

    async def disconnect(self, code) -> None:
        if not getattr(self, "accepted", False):
            return
        self.accepted = False
        stats.live.disconnected()
        self.watchdog.cancel()
        for channel in list(self.subs):
            await self.drop(channel)

    # --- frames from the client -------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.closing:
            return  # frames still queued behind our close
        self.last_heard = time.monotonic()
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        limit = settings.SWITCHBOARD["MAX_FRAME_BYTES"]
        if size > limit:
            await self.send_error(
                None, FrameError("too_large", f"frames are limited to {limit} bytes")
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
                    None, FrameError("rate_limited", "too many frames; slow down")
                )
            return
        frame_id = None
        try:
            if text_data is None:
                raise FrameError("invalid_json", "frames must be JSON text, not binary")
            try:
                frame = json.loads(text_data)
            except ValueError as error:
                raise FrameError("invalid_json", f"not valid JSON: {error}") from None
            if not isinstance(frame, dict):
                raise FrameError("invalid_json", "a frame must be a JSON object")
            frame_id = frame.get("id")
            if frame_id is not None and (
                isinstance(frame_id, bool) or not isinstance(frame_id, (str, int, float))
            ):
                frame_id = None
                raise FrameError("invalid_action", "id must be a string or a number", "id")
            action = frame.get("action")
            if not isinstance(action, str) or not action:
                raise FrameError("invalid_action", "every frame needs an action", "action")
            if action not in ACTIONS:
                raise FrameError(
                    "invalid_action",
                    f"unknown action {action[:50]!r}; known: {', '.join(ACTIONS)}",
                    "action",
                )
            await getattr(self, f"do_{action}")(frame, frame_id)
        except FrameError as error:
            await self.send_error(frame_id, error)
        except Exception:
            log.exception("frame failed")
            await self.send_error(frame_id, FrameError("internal", "the server could not do that"))

    async def do_ping(self, frame: dict, frame_id) -> None:
        reply = {"type": "pong", "ts": frame.get("ts")}
        await self.reply(frame_id, reply)
        # A safety net for a frame the layer lost while nothing followed it:
        # at most once per HEAD_CHECK_SECONDS, so pinging fast costs nothing more.
        now = time.monotonic()
        names = [name for name, sub in self.subs.items() if sub.ref.kind != "system"]
        if names and now - self.heads_checked >= HEAD_CHECK_SECONDS:
            self.heads_checked = now
            heads = await database_sync_to_async(events.channel_heads)(names)
            for name, head in heads.items():
                sub = self.subs.get(name)
                if sub is not None and head > sub.cursor:
                    await self.catch_up(sub)

    async def do_subscribe(self, frame: dict, frame_id) -> None:
        channel = frame.get("channel")
        if not isinstance(channel, str) or not channel:
            raise FrameError("invalid_action", "subscribe needs a channel", "channel")
        since = parse_seq(frame.get("since"), "since")
        try:
            ref = streams.parse(channel)
        except streams.ChannelError as error:
            raise self.channel_error(error) from None
        raw_filter = frame.get("filter")
        if ref.kind != "logs" and raw_filter not in (None, {}):
            raise FrameError("invalid_action", "filter applies to logs channels only", "filter")
        try:
            log_filter = log_services.parse_filter(raw_filter)
        except services.ServiceError as error:
            raise FrameError("invalid_action", error.message, "filter") from None
        if channel in self.subs:
            await self.drop(channel)
        group = events.group_for(channel)
        # Join the group first: nothing committed after the cursor is read can be missed.
        await self.channel_layer.group_add(group, self.channel_name)
        try:
            opened = await database_sync_to_async(streams.open_channel)(
                self.user, ref, since, log_filter
            )
        except streams.ChannelError as error:
            await self.channel_layer.group_discard(group, self.channel_name)
            raise self.channel_error(error) from None
        except BaseException:
            await self.channel_layer.group_discard(group, self.channel_name)
            raise
        sub = Subscription(ref=ref, cursor=opened.cursor, log_filter=log_filter)
        if ref.kind == "logs":
            conf = settings.SWITCHBOARD
            sub.budget = TokenBucket(conf["LOG_LINES_PER_SECOND"], conf["LOG_LINES_BURST"])
        self.subs[channel] = sub
        stats.live.subscribed(channel)
        reply = {"type": "subscribed", "channel": channel, "seq": opened.cursor}
        if opened.snapshot is not None:
            reply["snapshot"] = opened.snapshot
        if opened.reset:
            reply["reset"] = True
        if ref.kind == "logs":
            reply["filter"] = log_filter.as_json()
        await self.reply(frame_id, reply)
        if ref.kind == "system":
            sub.ticker = asyncio.create_task(self.tick_stats(sub))
        elif since is not None and not opened.reset:
            await self.catch_up(sub)

    async def do_unsubscribe(self, frame: dict, frame_id) -> None:
        channel = frame.get("channel")
        if not isinstance(channel, str) or not channel:
            raise FrameError("invalid_action", "unsubscribe needs a channel", "channel")
        was = channel in self.subs
        await self.drop(channel)
        await self.reply(
            frame_id, {"type": "unsubscribed", "channel": channel, "was_subscribed": was}
        )

    async def do_cancel_task(self, frame: dict, frame_id) -> None:
        task_id = parse_seq(frame.get("task_id"), "task_id")
        if not task_id:
            raise FrameError("invalid_action", "cancel_task needs a task_id", "task_id")
        outcome = await database_sync_to_async(self.cancel)(task_id)
        task, changed, update = outcome
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

    def cancel(self, task_id: int) -> tuple[dict, bool, str | None]:
        task = access.visible_tasks(self.user).select_related("session").filter(pk=task_id).first()
        if task is None:
            raise FrameError("not_found", f"no task {task_id} that you can see", "task_id")
        if not access.can_change(self.user, task.session):
            raise FrameError("forbidden", "you may not cancel this task", "task_id")
        task, changed = services.cancel_task(task_id)
        update = None
        if changed:
            event = (
                Event.objects.filter(task_id=task_id, kind="task.update").order_by("-id").first()
            )
            update = events.dumps(events.frames_for([event], f"task:{task_id}")[0].frame)
        return task.as_json(), changed, update

    # --- frames from the channel layer --------------------------------------------

    async def dispatch(self, message) -> None:
        # Skip the base class's database hop before every message: handlers that
        # touch the database do it through database_sync_to_async, which closes
        # stale connections itself. Live frames then cost no thread switch.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def sb_event(self, message: dict) -> None:
        sub = self.subs.get(message["channel"])
        if sub is None or message["seq"] <= sub.cursor:
            return
        if message["prev"] > sub.cursor:
            await self.catch_up(sub)
            return
        sub.cursor = message["seq"]
        hidden = sub.ref.kind in streams.SHARED and not self.sees_all
        if hidden and message.get("owner_id") != self.user.pk:
            return
        if sub.ref.kind == "logs":
            await self.relay_log(sub, message)
            return
        await self.send_frame(message["frame"])

    async def relay_log(self, sub: Subscription, message: dict) -> None:
        """A live log batch, filtered, within the subscriber's line budget.

        Past the budget (a flood), the batch is not sent; one log.skipped
        notice then says how many lines, how many errors, and which ids, so
        the page can fetch exactly those lines. The stream itself never waits.
        """
        frame = None
        count = message.get("count", 0)
        if not sub.log_filter.is_empty:
            frame = streams.filter_entries(parsed_frame(message), sub.log_filter)
            if frame is None:
                return
            count = len(frame["data"]["entries"])
        if not sub.budget.take(count):
            entries = (frame or parsed_frame(message))["data"]["entries"]
            sub.skipped = sub.skipped or Skipped()
            sub.skipped.add(message["seq"], entries)
            if sub.flusher is None:
                loop = asyncio.get_running_loop()
                sub.flusher = loop.call_later(
                    1.0, lambda: asyncio.ensure_future(self.tell_skipped(sub))
                )
            return
        await self.tell_skipped(sub)
        await self.send_frame(events.dumps(frame) if frame else message["frame"])

    async def tell_skipped(self, sub: Subscription) -> None:
        if sub.flusher is not None:
            sub.flusher.cancel()
            sub.flusher = None
        skipped, sub.skipped = sub.skipped, None
        if skipped is None or self.subs.get(sub.ref.name) is not sub:
            return
        frame = {
            "type": "event",
            "channel": sub.ref.name,
            "event": "log.skipped",
            "seq": skipped.seq,
            "ts": timezone.now().isoformat(),
            "data": {
                "count": skipped.count,
                "errors": skipped.errors,
                "first_id": str(skipped.first_id),
                "last_id": str(skipped.last_id),
            },
        }
        await self.send_frame(events.dumps(frame))

    async def catch_up(self, sub: Subscription) -> None:
        """Relay every stored event of the channel after the cursor, in order."""
        while self.subs.get(sub.ref.name) is sub:
            page = LOG_BACKLOG_PAGE if sub.ref.kind == "logs" else BACKLOG_PAGE
            frames, cursor = await database_sync_to_async(streams.read_visible)(
                self.user, sub.ref, sub.cursor, page
            )
            if cursor == sub.cursor:
                return
            for frame in frames:
                if sub.ref.kind == "logs" and not sub.log_filter.is_empty:
                    frame = streams.filter_entries(frame, sub.log_filter)
                    if frame is None:
                        continue
                await self.send_frame(events.dumps(frame))
            sub.cursor = cursor

    async def tick_stats(self, sub: Subscription) -> None:
        interval = settings.SWITCHBOARD["STATS_INTERVAL"]
        while True:
            await asyncio.sleep(interval)
            figures = await database_sync_to_async(stats.snapshot)()
            sub.cursor = figures["last_seq"]
            frame = {
                "type": "event",
                "channel": "system",
                "event": "system.stats",
                "seq": figures["last_seq"],
                "ts": figures["ts"],
                "data": figures,
            }
            await self.send_frame(events.dumps(frame))

    async def sb_alert(self, message: dict) -> None:
        if "system" in self.subs:
            await self.send_frame(message["frame"])

    # --- helpers ------------------------------------------------------------------

    async def drop(self, channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if sub is None:
            return
        stats.live.unsubscribed(channel)
        if sub.ticker is not None:
            sub.ticker.cancel()
        if sub.flusher is not None:
            sub.flusher.cancel()
        await self.channel_layer.group_discard(events.group_for(channel), self.channel_name)

    async def idle_watch(self, timeout: int) -> None:
        step = min(30.0, max(timeout / 4, 0.25))
        while True:
            await asyncio.sleep(step)
            if time.monotonic() - self.last_heard > timeout:
                log.info("closing a connection silent for over %s s", timeout)
                await self.close(code=CLOSE_IDLE)
                return

    def channel_error(self, error: streams.ChannelError) -> FrameError:
        return FrameError(
            error.code, error.message, "channel", available_channels=events.AVAILABLE_CHANNELS
        )

    async def send_frame(self, text: str) -> None:
        if self.closing:
            return
        try:
            await self.send(text_data=text)
        except Exception:
            # The peer is gone (daphne refuses sends on a closed socket). Stop
            # sending; the disconnect that follows cleans up. Raising here would
            # end the consumer before it could.
            self.closing = True
            return
        stats.live.messages_sent += 1

    async def close(self, code=None, reason=None) -> None:
        if self.closing:
            return
        self.closing = True
        await super().close(code=code, reason=reason)

    async def reply(self, frame_id, body: dict) -> None:
        if frame_id is not None:
            body = {"type": body.pop("type"), "id": frame_id, **body}
        await self.send_frame(events.dumps(body))

    async def send_error(self, frame_id, error: FrameError) -> None:
        body = {"type": "error", "code": error.code, "message": error.message}
        if error.field:
            body["field"] = error.field
        body.update(error.extra)
        if error.code == "invalid_channel":
            body.setdefault("available_channels", events.AVAILABLE_CHANNELS)
        await self.reply(frame_id, body)

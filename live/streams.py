"""The channels a client can subscribe to: names, access, snapshots, resume.

Each kind of channel is a `Stream`. The core registers its own (system);
each feature plugs in its streams at start-up with `register()` from its app
config (sessions_app: sessions, tasks, session:<id>, task:<id>; logs_app:
logs:<session_id>). The socket consumer and the events API ask a channel's
stream the same questions, so both answer them the same way: who may see it,
its snapshot, how a subscriber's filter narrows its frames, and how live
messages become frames for one subscriber.
"""

import re
from dataclasses import dataclass
from typing import Any

from live import events, ordering, stats
from live.errors import Refused
from live.models import EventChannel

ID_RE = re.compile(r"^[1-9][0-9]{0,17}$")
DELETIONS = ("session.deleted", "task.deleted")


class ChannelError(Refused):
    """A channel that does not exist, or that the user may not see."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code, field="channel")


@dataclass(frozen=True)
class ChannelRef:
    name: str
    kind: str
    id: int | None = None

    @property
    def stream(self) -> "Stream":
        return _streams[self.kind]


class Relay:
    """How one subscription turns live layer messages into frames.

    `live()` answers the frames to send now and, optionally, a delay after
    which `flush()` should be asked for more (a notice of what was held back).
    """

    def live(self, message: dict) -> tuple[list[str], float | None]:
        return [message["frame"]], None

    def flush(self) -> list[str]:
        return []


class Stream:
    kind: str = ""
    pattern: str = ""  # as listed in `available_channels`
    has_id: bool = False
    # Stored events read per database round trip when catching up.
    backlog_page: int = 500
    # Shared channels carry the events of many owners; a subscriber who does
    # not read them all gets those of its own (events carry `owner_id`).
    shared_key: str | None = None
    # Whether subscribers may narrow it with a `filter`.
    filters: bool = False
    # Whether it carries the events of many sessions (sessions, tasks,
    # system): read up to the commit horizon, not in id order alone
    # (ordering.horizon). A channel of one session is not.
    wide: bool = False

    def reads_all(self, user) -> bool:
        """Whether the user reads every owner's events of a shared channel."""
        return user.is_active and user.is_superuser

    def check_access(self, user, ref: ChannelRef) -> Any:
        """The object behind the channel, if the user may see it; ChannelError if not."""
        return None

    def parse_filter(self, raw) -> Any:
        """A subscriber's filter (field `filter`); only some streams take one."""
        if raw not in (None, {}):
            takers = ", ".join(s.pattern for s in _streams.values() if s.filters) or "none"
            message = f"this channel takes no filter (channels that do: {takers})"
            raise Refused(message, field="filter")
        return None

    def describe_filter(self, narrowing) -> dict | None:
        """The parsed filter, echoed in `subscribed` (None: not echoed)."""
        return None

    def snapshot(self, user, ref: ChannelRef, obj, narrowing) -> dict:
        raise NotImplementedError

    def narrow(self, frame: dict, narrowing) -> dict | None:
        """A stored frame as one subscriber should see it (None: not at all)."""
        return frame

    def relay(self, narrowing) -> Relay:
        return Relay()

    def visible_ids(self, user, ids: set[int]) -> set[int]:
        """Which of these channels' ids the user may see."""
        seen = set()
        for ident in ids:
            try:
                self.check_access(user, ChannelRef(f"{self.kind}:{ident}", self.kind, ident))
            except ChannelError:
                continue
            seen.add(ident)
        return seen

    def was_deleted(self, user, ref: ChannelRef) -> bool:
        """Whether the channel ends in a deletion the user may see."""
        placed = EventChannel.objects.filter(channel=ref.name, event__kind__in=DELETIONS)
        if not self.reads_all(user):
            placed = placed.filter(event__owner_id=user.pk)
        return placed.exists()


_streams: dict[str, Stream] = {}


def register(stream: Stream) -> None:
    _streams[stream.kind] = stream
    if stream.wide:
        ordering.register_wide(stream.kind)


def available_channels() -> list[str]:
    return [stream.pattern for stream in _streams.values()]


def reads_all_kinds(user) -> frozenset[str]:
    """The kinds of shared channel whose every owner's events the user reads."""
    return frozenset(s.kind for s in _streams.values() if s.shared_key and s.reads_all(user))


def parse(name) -> ChannelRef:
    if not isinstance(name, str):
        raise ChannelError("invalid_channel", "channel must be a string")
    kind, colon, ident = name.partition(":")
    stream = _streams.get(kind)
    if stream is None or bool(colon) != stream.has_id or (colon and not ID_RE.match(ident)):
        raise ChannelError("invalid_channel", f"unknown channel {name[:100]!r}")
    return ChannelRef(name=name, kind=kind, id=int(ident) if colon else None)


def visible_names(user, names) -> set[str]:
    """The channel names, of those given, that the user may subscribe to."""
    ids: dict[str, set[int]] = {}
    visible = set()
    for name in names:
        try:
            ref = parse(name)
        except ChannelError:
            continue
        if ref.id is not None:
            ids.setdefault(ref.kind, set()).add(ref.id)
            continue
        try:
            check_access(user, ref)
        except ChannelError:
            continue
        visible.add(name)
    for kind, wanted in ids.items():
        visible.update(f"{kind}:{ident}" for ident in _streams[kind].visible_ids(user, wanted))
    return visible


class SystemStream(Stream):
    kind = pattern = "system"
    wide = True

    def check_access(self, user, ref) -> None:
        if not user.is_staff:
            raise ChannelError("forbidden", "the system channel is for staff only")

    def snapshot(self, user, ref, obj, narrowing) -> dict:
        return {"stats": stats.snapshot()}


register(SystemStream())


# --- opening and reading a channel ---------------------------------------------------


def check_access(user, ref: ChannelRef):
    return ref.stream.check_access(user, ref)


@dataclass
class Opened:
    cursor: int
    snapshot: dict | None
    reset: bool


def check_readable(user, ref: ChannelRef):
    """check_access for reading a channel's stored events: a channel whose
    session or task is gone stays readable to whoever could see it, so that
    they learn of the deletion (its event is the channel's last)."""
    try:
        return ref.stream.check_access(user, ref)
    except ChannelError:
        if ref.id is None or not ref.stream.was_deleted(user, ref):
            raise
        return None


def open_channel(user, ref: ChannelRef, since: int | None, narrowing=None) -> Opened:
    """Check access, then return the cursor and, unless resuming, the snapshot.

    The cursor is read before the snapshot: the snapshot is then at least as
    new as the cursor, and anything after the cursor follows as events.
    A `since` older than what is kept, or newer than anything stored (a
    client of a database that was reset), gets a fresh snapshot and reset.
    """
    stream = ref.stream
    if since is not None and check_readable(user, ref) is None:
        # Gone: the stored events after `since`, its deletion last, follow.
        return Opened(since, None, False)
    obj = stream.check_access(user, ref)
    reset = False
    if since is not None:
        reset = must_reset(ref, since)
        if not reset:
            return Opened(since, None, False)
    cursor = events.channel_head(ref.name)
    return Opened(cursor, stream.snapshot(user, ref, obj, narrowing), reset)


def kept_after(channel: str) -> int:
    """The newest seq of a channel whose event was deleted (0: none was).

    Old events go oldest first (`prune`, and `prune --keep-lines` for a log
    still being written), so what a channel keeps is the end of it, and its
    oldest kept placement's `prev` names the last event it lost: one index
    probe, with no bookkeeping of its own."""
    prev = (
        EventChannel.objects.filter(channel=channel)
        .order_by("event_id")
        .values_list("prev", flat=True)
        .first()
    )
    return prev or 0


def must_reset(ref: ChannelRef, since: int) -> bool:
    """Whether a reader of this channel at `since` must start again from a
    snapshot: events.must_reset (older than what is kept anywhere, or newer
    than anything stored), or an event of this channel after `since` is gone."""
    return events.must_reset(since) or since < kept_after(ref.name)


def read_visible(user, ref: ChannelRef, since: int, limit: int) -> tuple[list[dict], int]:
    """Stored frames of a channel after `since` that the user may see, and the
    seq the reader is then at (past frames it may not see too)."""
    if not ref.stream.shared_key or ref.stream.reads_all(user):
        stored = events.read_channel(ref.name, since, limit)
        return [s.frame for s in stored], stored[-1].seq if stored else since
    # A shared channel, read for one user: their events only. The head is
    # read first (ids follow commit order up to it), so that the cursor can
    # pass the others' events up to it without passing one of the user's.
    head = events.channel_head(ref.name)
    stored = events.read_channel(ref.name, since, limit, owner_id=user.pk, until=head)
    if len(stored) == limit:
        return [s.frame for s in stored], stored[-1].seq
    return [s.frame for s in stored], max(since, head)

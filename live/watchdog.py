"""One task per process watches every open socket (not one task per socket).

Each round it asks each socket's guards whether it has earned a close (silent
too long, not reading too long), and every IDENTITY_CHECK_SECONDS it reads
the identities and rights of the users behind the sockets again: a revoked
identity closes its socket, changed rights end the subscriptions the user
may no longer see.
"""

import asyncio
import copy
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from live import streams
from live.auth import still_valid
from live.guards import CLOSE_IDLE, CLOSE_REVOKED, CLOSE_SLOW

log = logging.getLogger("switchboard.consumers")


@dataclass(frozen=True)
class Rights:
    """What a socket's user may do, as far as the socket is concerned; read
    at connect and again every IDENTITY_CHECK_SECONDS."""

    user: Any = field(compare=False)
    # The kinds of shared channel whose every owner's events the user reads.
    reads_all: frozenset
    is_staff: bool
    # Any change of permissions or groups: subscriptions are then checked again.
    permissions: frozenset

    @classmethod
    def of(cls, user) -> "Rights":
        """The user's rights; the same object (and user) for every socket of
        one user whose rights are the same: a user object carries its
        permission caches (for a superuser, every permission's name, three
        times over), which a socket each made thousands of times over."""
        # Asked of a copy: the caches go with it, not with the user kept.
        probe = copy.copy(user)
        perms = frozenset(probe.get_all_permissions()) if user.is_active else frozenset()
        rights = cls(user, streams.reads_all_kinds(probe), user.is_staff, perms)
        return _shared.setdefault((user.pk, rights), rights)

    @classmethod
    def of_users(cls, ids: set[int]) -> dict[int, "Rights"]:
        from django.contrib.auth import get_user_model

        return {user.pk: cls.of(user) for user in get_user_model().objects.filter(pk__in=ids)}


# Rights in use, by user and value (gone with the last socket that holds them).
_shared: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class Watchdog:
    def __init__(self) -> None:
        self.connections: dict[Any, None] = {}
        self.task: asyncio.Task | None = None

    def watch(self, consumer) -> None:
        self.connections[consumer] = None
        if self.task is None or self.task.done() or self.task.get_loop().is_closed():
            self.task = asyncio.get_running_loop().create_task(self.run())

    def forget(self, consumer) -> None:
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
                liveness = consumer.liveness
                code = liveness.verdict(now, timeout, conf["SLOW_CLOSE"])
                if code == CLOSE_IDLE:
                    log.info("closing a connection silent for over %s s (%s)", timeout, code)
                elif code == CLOSE_SLOW:
                    since = now - liveness.paused_at
                    log.info("closing a connection that has not read for %.0f s (%s)", since, code)
                if code is not None:
                    try:
                        await consumer.close(code=code)
                    except Exception:
                        log.exception("could not close a connection")
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
        subscriptions its user may no longer see."""
        users = {c.user.pk for c in self.connections if c.accepted and not c.closing}
        if not users:
            return
        fresh = await database_sync_to_async(Rights.of_users)(users)
        for consumer in list(self.connections):
            rights = fresh.get(consumer.user.pk)
            if rights is not None and consumer.accepted and rights != consumer.rights:
                await consumer.rights_changed(rights)


watchdog = Watchdog()

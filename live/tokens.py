"""API tokens, read from the database once per process and kept until revoked.

A bearer request's identity is a hash lookup in this process's memory: the
token's user (its row's values) and that user's permissions, read together
on the first request of the token and then served with no database query.

Revocation reaches every process at once through one version, which any
change that could revoke or narrow a token replaces (`revoked()`, connected
to the model signals in `connect()`): deleting a token, saving or deleting a
user (deactivated, made non-staff), changing a user's groups or permissions
or a group's permissions. A kept entry is served only under the version it
was read under, and the version is read on every request:

- with Redis (`REDIS_URL`), it is a key that every process reads, one GET a
  request, on the event loop for async endpoints; a revoking process
  replaces it as the change is made and again once it commits, before the
  revoking request answers. So a request that begins after a revocation has
  answered finds a new version, reads the database, and is refused. When
  Redis cannot be read, the request falls back to the database (as before
  the cache), and the process drops what it kept.
- without Redis there is one server process. On SQLite the version is a
  small file beside the database (`<database>-tokens`), replaced whole by a
  revoking process (a command or a shell too) and looked at (`os.stat`) on
  every request; on PostgreSQL without Redis it is a number in the server's
  memory, so a revocation from another process reaches it within the bound.

A kept entry is also read again after `SWITCHBOARD_TOKEN_CACHE_SECONDS` (60),
a bound for what no signal reports (a `QuerySet.update()` of users, a change
made straight in the database, a revoking process that cannot reach Redis);
call `revoked()` after such a change.
"""

import asyncio
import logging
import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.utils import timezone

from live import dbthreads
from live.models import ApiToken, hash_token

log = logging.getLogger(__name__)

MAX_ENTRIES = 10_000


@dataclass
class Entry:
    token_id: int
    fields: tuple  # the user row's values, in the order of _fields()
    perms: tuple[frozenset, frozenset] | None  # (user's own, through groups)
    version: object
    read_at: float  # time.monotonic()
    last_used_at: datetime | None


def _fields() -> list[str]:
    return [f.attname for f in get_user_model()._meta.concrete_fields]


def _model_backend_only() -> bool:
    return list(settings.AUTHENTICATION_BACKENDS) == ["django.contrib.auth.backends.ModelBackend"]


def _user(entry: Entry):
    """A user object of the kept values, with its permissions already known
    (ModelBackend's caches), so `has_perm` reads nothing."""
    user = get_user_model().from_db("default", _fields(), entry.fields)
    if entry.perms is not None:
        own, grouped = entry.perms
        user._user_perm_cache = set(own)
        user._group_perm_cache = set(grouped)
        user._perm_cache = set(own | grouped)
    return user


class Versions:
    """The revocation version: a number in memory (one process), or a Redis key."""

    def __init__(self, url: str | None, key: str, path: str | None = None) -> None:
        self.url, self.key, self.path = url, key, path
        self.local = 0
        self._sync = None
        self._async: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _sync_client(self):
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        return self._sync

    def _async_client(self):
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            import redis.asyncio

            client = self._async[loop] = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=1, socket_connect_timeout=1
            )
        return client

    def _write(self) -> None:
        """A new version file (a new inode: replaced whole, never edited)."""
        tmp = f"{self.path}.{os.getpid()}.{uuid.uuid4().hex}"
        with open(tmp, "w") as file:
            file.write(uuid.uuid4().hex)
        os.replace(tmp, self.path)

    def _local(self):
        if self.path is None:
            return self.local
        try:
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                self._write()
                stat = os.stat(self.path)
        except OSError as exc:
            log.warning("token version unreadable, checking tokens in the database: %s", exc)
            return None
        return (self.local, stat.st_ino, stat.st_mtime_ns)

    def read(self):
        """The current version; None when it cannot be known (Redis down)."""
        if self.url is None:
            return self._local()
        try:
            client = self._sync_client()
            value = client.get(self.key)
            if value is None:  # never set, or Redis lost it: a new one
                client.set(self.key, uuid.uuid4().hex, nx=True)
                value = client.get(self.key)
            return value
        except Exception as exc:  # noqa: BLE001 - any failure means "unknown"
            log.warning("token version unreadable, checking tokens in the database: %s", exc)
            return None

    async def aread(self):
        if self.url is None:
            return self._local()
        try:
            client = self._async_client()
            value = await client.get(self.key)
            if value is None:
                await client.set(self.key, uuid.uuid4().hex, nx=True)
                value = await client.get(self.key)
            return value
        except Exception as exc:  # noqa: BLE001
            log.warning("token version unreadable, checking tokens in the database: %s", exc)
            return None

    def bump(self) -> None:
        self.local += 1
        if self.url is None:
            if self.path is not None:
                try:
                    self._write()
                except OSError:
                    log.exception("token revocation not written to %s", self.path)
            return
        try:
            self._sync_client().set(self.key, uuid.uuid4().hex)
        except Exception:  # noqa: BLE001
            log.exception("token revocation not published; other processes keep their entries")


class TokenCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, Entry] = {}
        self.version: object = None
        self.versions: Versions | None = None

    def _versions(self) -> Versions:
        if self.versions is None:
            prefix = settings.SWITCHBOARD["REDIS_PREFIX"]
            conf = connections["default"].settings_dict
            path = None
            if conf["ENGINE"].endswith("sqlite3") and str(conf["NAME"]) != ":memory:":
                path = f"{conf['NAME']}-tokens"  # beside the database every process opens
            self.versions = Versions(settings.REDIS_URL or None, f"{prefix}:tokens:version", path)
        return self.versions

    def forget(self) -> None:
        with self.lock:
            self.entries.clear()

    def _adopt(self, version) -> None:
        """Drop everything kept under another version."""
        if version != self.version:
            with self.lock:
                self.entries.clear()
                self.version = version

    def _hit(self, digest: str, version):
        """The kept user of `digest` under `version`, or None (read the database)."""
        self._adopt(version)
        if version is None:
            return None
        entry = self.entries.get(digest)
        if entry is None or entry.version != version:
            return None
        if time.monotonic() - entry.read_at > settings.SWITCHBOARD["TOKEN_CACHE_SECONDS"]:
            return None
        now = timezone.now()
        if (
            entry.last_used_at is None
            or (now - entry.last_used_at).total_seconds() > ApiToken.LAST_USED_EVERY
        ):
            entry.last_used_at = now
            _touch(entry.token_id, now)
        return _user(entry)

    def read(self, digest: str, version):
        """The database lookup of a miss, kept for the next request when
        `version` is known (read before it, so a revocation committed after
        this read has replaced it)."""
        token = ApiToken.find(digest)
        if token is None:
            return None
        user = token.user
        if version is None:
            return user
        perms = None
        if _model_backend_only():
            user.get_all_permissions()  # fills the backend's caches
            perms = (frozenset(user._user_perm_cache), frozenset(user._group_perm_cache))
        entry = Entry(
            token_id=token.pk,
            fields=tuple(getattr(user, name) for name in _fields()),
            perms=perms,
            version=version,
            read_at=time.monotonic(),
            last_used_at=token.last_used_at,
        )
        with self.lock:
            if len(self.entries) >= MAX_ENTRIES:
                self.entries.pop(next(iter(self.entries)))
            self.entries[digest] = entry
        return user

    def lookup(self, plain: str):
        """The active user of a token, or None (sync: one thread, no hop)."""
        digest = hash_token(plain)
        version = self._versions().read()
        user = self._hit(digest, version)
        return user if user is not None else self.read(digest, version)

    async def alookup(self, plain: str):
        """The same, with a hit served on the event loop and a miss on a
        database thread."""
        digest = hash_token(plain)
        version = await self._versions().aread()
        user = self._hit(digest, version)
        if user is not None:
            return user
        return await dbthreads.run(self.read, digest, version)

    def revoked(self) -> None:
        """A change that may revoke or narrow tokens: every process reads its
        tokens from the database again. Now (for this transaction's own later
        reads) and once the change commits (for reads that raced it)."""
        self._bump()
        transaction.on_commit(self._bump)

    def _bump(self) -> None:
        self._versions().bump()
        self.forget()


def _touch(token_id: int, now: datetime) -> None:
    """last_used_at, written off the request's path (on a database thread)."""

    def write() -> None:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)

    if settings.SWITCHBOARD["DB_THREADS"]:
        dbthreads.submit(write)
    else:
        write()


cache = TokenCache()
lookup = cache.lookup
alookup = cache.alookup


def revoked(*args, **kwargs) -> None:
    cache.revoked()


def _user_saved(sender, instance, update_fields=None, created=False, **kwargs) -> None:
    # A login (last_login) or a new user changes no token's rights.
    if created or (update_fields and set(update_fields) <= {"last_login"}):
        return
    cache.revoked()


def connect() -> None:
    """The signals that revoke: called from the app's ready()."""
    from django.contrib.auth.models import Group, Permission
    from django.db.models import signals

    user_model = get_user_model()
    signals.post_delete.connect(revoked, sender=ApiToken, dispatch_uid="tokens-token-deleted")
    signals.post_save.connect(_token_saved, sender=ApiToken, dispatch_uid="tokens-token-saved")
    signals.post_save.connect(_user_saved, sender=user_model, dispatch_uid="tokens-user-saved")
    signals.post_delete.connect(revoked, sender=user_model, dispatch_uid="tokens-user-deleted")
    signals.post_delete.connect(revoked, sender=Group, dispatch_uid="tokens-group-deleted")
    signals.post_delete.connect(revoked, sender=Permission, dispatch_uid="tokens-perm-deleted")
    for through, name in (
        (user_model.groups.through, "groups"),
        (user_model.user_permissions.through, "user-perms"),
        (Group.permissions.through, "group-perms"),
    ):
        signals.m2m_changed.connect(_m2m_changed, sender=through, dispatch_uid=f"tokens-{name}")


def _m2m_changed(sender, action: str, **kwargs) -> None:
    if action.startswith("post_"):
        cache.revoked()


def _token_saved(sender, instance, created=False, update_fields=None, **kwargs) -> None:
    # A new token, or last_used_at, revokes nothing; a token moved to another
    # user does.
    if created or (update_fields and set(update_fields) <= {"last_used_at"}):
        return
    cache.revoked()

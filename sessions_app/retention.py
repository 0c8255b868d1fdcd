"""What `prune` asks of the features beyond its own tables.

A feature whose rows grow while a session runs registers a trimmer here at
start-up (logs_app: a session's oldest log lines beyond its newest N), the
way eventfiles takes replay handlers; `prune --keep-lines N` calls each one
as `trim(N, batch=..., out=..., dry_run=...)`.
"""

from collections.abc import Callable

Trimmer = Callable[..., None]
_trimmers: list[Trimmer] = []


def register_trimmer(trim: Trimmer) -> None:
    if trim not in _trimmers:
        _trimmers.append(trim)


def trimmers() -> list[Trimmer]:
    return list(_trimmers)

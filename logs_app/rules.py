"""Log alert rules as ingest sees them: loaded once per process, matched cheaply.

Patterns are RE2's (logs_app.patterns): linear time, whatever the pattern.

The active rules are kept in the process (`cache`). A save or delete here
drops them at once (signals, logs_app.apps); other processes notice through
a version, the number of rules and their newest `updated_at`, read at most
once a second when lines are stored (`CHECK_SECONDS`). With no rules, storing
lines costs that one small query a second and nothing per line. With rules,
a batch is matched in one pass: lines below every rule's level are skipped,
then one RE2 set finds, per line, which rules' patterns occur (none: nothing
more to do), then each candidate's session, level, task and logger are
compared.
"""

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import re2
from django.db.models import Count, Max

from logs_app.models import AlertRule
from logs_app.patterns import OPTIONS, compile_pattern

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Rule:
    """What matching and firing need of an AlertRule."""

    id: int
    name: str
    session_id: int | None
    level: int
    task_id: int | None
    logger: str
    pattern: str
    threshold: int
    window_seconds: int
    quiet_seconds: int
    webhook_ids: tuple[int, ...]

    def takes(self, session_id: int, entry) -> bool:
        """The cheap part of the match (all but the pattern)."""
        if self.session_id is not None and self.session_id != session_id:
            return False
        if entry.level < self.level:
            return False
        if self.task_id is not None and entry.task_id != self.task_id:
            return False
        if self.logger and entry.logger != self.logger:
            return entry.logger.startswith(self.logger + ".")
        return True


class RuleSet:
    """The active rules and one RE2 set of their patterns."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.plain = [rule for rule in rules if not rule.pattern]
        self.patterned = [rule for rule in rules if rule.pattern]
        self.floor = min((rule.level for rule in rules), default=0)
        self.programs = [compile_pattern(rule.pattern) for rule in self.patterned]
        self.set = None
        if self.patterned:
            try:
                found = re2.Set.SearchSet(OPTIONS)
                for rule in self.patterned:
                    found.Add(rule.pattern)
                found.Compile()
                self.set = found
            except Exception:  # too big for one program: each pattern on its own
                log.warning("alert rule patterns matched one by one (too many for one set)")

    def __bool__(self) -> bool:
        return bool(self.rules)

    def _patterned(self, message: str) -> Iterable[Rule]:
        if self.set is not None:
            try:
                hits = self.set.Match(message)
            except Exception:  # out of memory on this line: the slow way
                hits = [i for i, p in enumerate(self.programs) if p.search(message)]
        else:
            hits = [i for i, p in enumerate(self.programs) if p.search(message)]
        return [self.patterned[i] for i in hits or ()]

    def match(self, session_id: int, entries: list) -> dict[Rule, list]:
        """The entries each rule matches (only rules that match some)."""
        if not any(r.session_id in (None, session_id) for r in self.rules):
            return {}
        matched: dict[Rule, list] = {}
        for entry in entries:
            if entry.level < self.floor:
                continue
            for rule in self.plain:
                if rule.takes(session_id, entry):
                    matched.setdefault(rule, []).append(entry)
            if self.patterned:
                for rule in self._patterned(entry.message):
                    if rule.takes(session_id, entry):
                        matched.setdefault(rule, []).append(entry)
        return matched


class Cache:
    """The process's active rules, reloaded when their version moves."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: RuleSet | None = None
        self.version: tuple | None = None
        self.checked = 0.0

    def forget(self) -> None:
        """A rule changed in this process: reload at the next batch."""
        with self.lock:
            self.rules = None

    def active(self) -> RuleSet:
        with self.lock:
            rules, checked = self.rules, self.checked
        if rules is not None and time.monotonic() - checked < CHECK_SECONDS:
            return rules
        version = tuple(AlertRule.objects.aggregate(n=Count("id"), at=Max("updated_at")).values())
        if rules is None or version != self.version:
            rules = RuleSet(load())
        with self.lock:
            self.rules, self.version, self.checked = rules, version, time.monotonic()
        return rules


def load() -> list[Rule]:
    rows = AlertRule.objects.filter(active=True).prefetch_related("webhooks").order_by("id")
    found = []
    for row in rows:
        try:
            compile_pattern(row.pattern)
        except ValueError as error:  # written past clean(): left out, said once per load
            log.warning("alert rule %s left out: its pattern is refused (%s)", row.pk, error)
            continue
        found.append(
            Rule(
                id=row.pk,
                name=row.name,
                session_id=row.session_id,
                level=row.level,
                task_id=row.task_id,
                logger=row.logger,
                pattern=row.pattern,
                threshold=row.threshold,
                window_seconds=row.window_seconds,
                quiet_seconds=row.quiet_seconds,
                webhook_ids=tuple(sorted(hook.pk for hook in row.webhooks.all())),
            )
        )
    return found


cache = Cache()

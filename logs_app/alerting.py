"""Log alert rules fire: `system.alert` events and webhooks, grouped.

`check` runs inside the transaction that stores a batch of lines
(services.append_entries), after the lines. The rules that match some of the
lines lock their `AlertState` rows (in rule order, so writers of different
sessions cannot deadlock; no session lock is taken after them) and count:

- outside a quiet period, a rule keeps the batches of the last
  `window_seconds` (arrival time, the server's clock); once they add up to
  `threshold` matches it fires: one `system.alert` (on the `system` channel,
  with no session lock) and one outbox row per webhook, in the same
  transaction, and it is quiet for `quiet_seconds`;
- during a quiet period, matches are only counted (and the first `LINES`
  kept). When it ends with matches counted, the next look tells them in one
  alert, "N matches in M minutes", which starts a new quiet period: every
  server process's sweeper looks every `CHECK_SECONDS`, and a matching batch
  after the end does it too. So a flood gives one alert per quiet period,
  however many processes store it.
"""

import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.urls import get_script_prefix, reverse
from django.utils import timezone

from live import events
from logs_app.models import AlertState, LogEntry, level_name
from logs_app.rules import Rule, cache
from operations import outbox
from operations.alerts import slack_escape
from operations.sweeper import Sweeper
from sessions_app.models import Session, Webhook

log = logging.getLogger(__name__)

LINES = 5  # lines an alert shows
MESSAGE_CHARS = 500  # of each line's message
CHECK_SECONDS = 1.0  # between the sweeper's looks for ended quiet periods


def check(session_id: int, stored: list[LogEntry]) -> None:
    """Count the lines of one session just stored against the rules (inside
    the storing transaction); fire those that reach their threshold."""
    if not stored:
        return
    rules = cache.active()
    if not rules:
        return
    matched = rules.match(session_id, stored)
    if not matched:
        return
    now = timezone.now()
    by_id = {rule.id: (rule, hits) for rule, hits in matched.items()}
    states = AlertState.objects.select_for_update().filter(rule_id__in=sorted(by_id))
    for state in states.order_by("rule_id"):
        rule, hits = by_id[state.rule_id]
        take(state, rule, [line(entry) for entry in hits[:LINES]], len(hits), now)


def line(entry: LogEntry) -> dict:
    """A matching line as an alert shows it."""
    ts = entry.ts if isinstance(entry.ts, datetime) else timezone.now()
    return {
        "id": str(entry.pk),
        "session_id": str(entry.session_id),
        "task_id": str(entry.task_id) if entry.task_id else None,
        "ts": ts.isoformat(),
        "level": level_name(entry.level),
        "levelno": entry.level,
        "logger": entry.logger,
        "message": entry.message[:MESSAGE_CHARS],
    }


def take(state: AlertState, rule: Rule, lines: list[dict], count: int, now: datetime) -> None:
    """`count` new matches of `rule` (the first of them `lines`), its state locked."""
    if state.quiet_until is not None and now < state.quiet_until:
        state.pending += count
        state.pending_since = state.pending_since or now
        state.pending_lines = (state.pending_lines + lines)[:LINES]
        state.save(update_fields=["pending", "pending_since", "pending_lines"])
        return
    if state.pending:  # a quiet period ended with matches not yet told
        since = state.pending_since or now
        fire(state, rule, state.pending + count, since, state.pending_lines + lines, now)
        return
    start = now.timestamp() - rule.window_seconds
    recent = [item for item in state.recent if item[0] > start]
    kept = sum(len(item[2]) for item in recent)
    recent.append([now.timestamp(), count, lines[: max(0, LINES - kept)]])
    total = sum(item[1] for item in recent)
    if total < rule.threshold:
        state.recent = recent
        state.save(update_fields=["recent"])
        return
    since = datetime.fromtimestamp(recent[0][0], UTC)
    fire(state, rule, total, since, [one for item in recent for one in item[2]], now)


def fire(
    state: AlertState, rule: Rule, count: int, since: datetime, lines: list[dict], now: datetime
) -> None:
    """Record the alert and its deliveries; the rule is quiet from now."""
    state.recent, state.pending, state.pending_since, state.pending_lines = [], 0, None, []
    state.quiet_until = now + timedelta(seconds=rule.quiet_seconds)
    state.fired_at, state.fired = now, state.fired + 1
    state.save()
    data = describe(rule, count, since, lines[:LINES], now)
    hooks = receivers(rule)
    event = events.record("system.alert", ["system"], session_id=None, data=data)
    outbox.enqueue({**data, "seq": event.id, "ts": event.ts.isoformat()}, hooks)


def receivers(rule: Rule) -> list[tuple[int | None, str]]:
    """The rule's own active webhooks; with none chosen, every webhook."""
    if not rule.webhook_ids:
        return outbox.targets()
    found = Webhook.objects.filter(pk__in=rule.webhook_ids, active=True).order_by("pk")
    return [(pk, url) for pk, url in found.values_list("pk", "url") if url.startswith("http")]


def span(since: datetime, until: datetime) -> str:
    seconds = max(0.0, (until - since).total_seconds())
    if seconds < 90:
        whole = max(1, round(seconds))
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def link(rule: Rule, session_id: int, since: datetime, until: datetime, first: str) -> str:
    """The log viewer on the matches: the rule's level and task, the time
    range of the group (by arrival and by the lines' own times), the first
    line in view. Absolute when SWITCHBOARD_PUBLIC_URL is set."""
    path = reverse("logs", args=[session_id])[len(get_script_prefix()) - 1 :]
    query = {}
    if rule.level:
        query["level"] = level_name(rule.level)
    if rule.task_id:
        query["task"] = str(rule.task_id)
    query["since"] = (since - timedelta(seconds=1)).isoformat()
    query["until"] = (until + timedelta(seconds=1)).isoformat()
    base = settings.SWITCHBOARD["PUBLIC_URL"] or settings.ROOT_PATH
    return f"{base}{path}?{urlencode(query)}#L{first}"


def describe(rule: Rule, count: int, since: datetime, lines: list[dict], now: datetime) -> dict:
    """The system.alert data of a rule that fired (docs/PROTOCOL.md)."""
    first = lines[0]
    session_id = int(first["session_id"])
    found = Session.objects.filter(pk=session_id).values("pk", "name", "status").first()
    session = None
    if found:
        session = {"id": str(found["pk"]), "name": found["name"], "status": found["status"]}
    times = [datetime.fromisoformat(one["ts"]) for one in lines]
    url = link(rule, session_id, min([since, *times]), max([now, *times]), first["id"])
    text = (
        f"Log rule “{slack_escape(rule.name)}”: {count} match{'es' if count != 1 else ''}"
        f" in {span(since, now)}"
    )
    if session:
        text += f" (“{slack_escape(session['name'])}”, #{session['id']})"
    text += f": {slack_escape(first['message'].splitlines()[0][:300] if first['message'] else '')}"
    if url.startswith("http"):
        text += f" <{url}|log>"
    return {
        "event": "log.rule",
        "level": "error" if max(one["levelno"] for one in lines) >= 40 else "warning",
        "text": text,
        "session": session,
        "task": None,
        "rule": {"id": str(rule.id), "name": rule.name},
        "count": count,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "lines": lines,
        "url": url,
    }


def sweep(now: datetime | None = None) -> int:
    """Tell the matches of quiet periods that have ended; how many alerts."""
    rules = cache.active()
    if not rules:
        return 0
    now = now or timezone.now()
    by_id = {rule.id: rule for rule in rules.rules}
    due = AlertState.objects.filter(pending__gt=0, quiet_until__lte=now)
    told = 0
    for rule_id in list(due.order_by("rule_id").values_list("rule_id", flat=True)):
        with transaction.atomic():
            state = (
                AlertState.objects.select_for_update()
                .filter(pk=rule_id, pending__gt=0, quiet_until__lte=now)
                .first()
            )
            if state is None:  # told by another process meanwhile
                continue
            rule = by_id.get(rule_id)
            if rule is None:  # turned off: what it counted is dropped
                state.pending, state.pending_since, state.pending_lines = 0, None, []
                state.save(update_fields=["pending", "pending_since", "pending_lines"])
                continue
            since = state.pending_since or now
            fire(state, rule, state.pending, since, state.pending_lines, now)
            told += 1
    return told


# Started with the server (logs_app.apps).
start = Sweeper("log-alert", lambda: sweep(), lambda: CHECK_SECONDS).start

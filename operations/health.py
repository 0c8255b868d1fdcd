"""Health, readiness and Prometheus metrics, for load balancers and monitoring.

- `/healthz`: 200 while the process serves (no identity, no database).
- `/readyz`: 200 when the database and the channel layer answer, 503 with
  the reason when one does not.
- `/metrics`: the Prometheus text format for a staff bearer token (or anyone
  with SWITCHBOARD_METRICS_PUBLIC=1), covering every live server process from
  the figures each one reports every few seconds (live.stats).
"""

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from live import stats
from live.auth import bearer_token
from live.models import ApiToken
from sessions_app.models import Session, Task


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


def _select_one() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()  # this thread's connection (back to the pool, if any)


# Checks run here, so that a database that does not answer at all cannot hold
# the answer longer than CHECK_SECONDS (a pool waits for a connection longer).
_checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="switchboard-readyz")
CHECK_SECONDS = 3.0


def database_answers() -> str | None:
    try:
        _checks.submit(_select_one).result(timeout=CHECK_SECONDS)
    except FutureTimeout:
        return f"database: no answer within {CHECK_SECONDS:.0f} s"
    except Exception as error:
        return f"database: {type(error).__name__}: {str(error).strip()[:200]}"
    return None


def layer_answers() -> str | None:
    if not settings.REDIS_URL:
        return None  # the in-memory layer lives in this process
    import redis

    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        return f"channel layer: {type(error).__name__}: {str(error).strip()[:200]}"
    return None


@never_cache
@require_safe
def readyz(request):
    problems = [p for p in (database_answers(), layer_answers()) if p]
    if problems:
        return JsonResponse({"status": "unavailable", "reasons": problems}, status=503)
    return JsonResponse({"status": "ok"})


class ProcessesCollector:
    """Metric families from the figures of every live server process."""

    def collect(self):
        processes = stats.live_processes()
        label = ["process"]

        def gauge(name, doc, key):
            family = GaugeMetricFamily(f"switchboard_{name}", doc, labels=label)
            for process in processes:
                family.add_metric([process["name"]], process["data"].get(key, 0))
            return family

        def counter(name, doc, key):
            family = CounterMetricFamily(f"switchboard_{name}", doc, labels=label)
            for process in processes:
                family.add_metric([process["name"]], process["data"].get(key, 0))
            return family

        yield gauge("connections", "Open WebSocket connections.", "connections")
        yield counter("connections", "WebSocket connections accepted.", "connections_total")
        yield gauge("paused_sockets", "Sockets paused for not reading.", "paused")
        yield counter("frames_sent", "Frames sent to WebSocket clients.", "messages_sent")
        yield counter("layer_messages", "Messages taken from the channel layer.", "layer_messages")
        yield counter("log_lines", "Log lines stored.", "log_lines")
        yield counter("stale_tasks", "Running tasks failed for want of reports.", "stale_tasks")
        yield counter("webhook_failures", "Webhook deliveries that failed.", "webhook_failures")

        subscriptions = GaugeMetricFamily(
            "switchboard_subscriptions",
            "Subscriptions by kind of channel.",
            labels=["process", "kind"],
        )
        events = CounterMetricFamily(
            "switchboard_events_recorded", "Events recorded, by kind.", labels=["process", "kind"]
        )
        writes = HistogramMetricFamily(
            "switchboard_write_seconds", "Time a write took, change and events.", labels=label
        )
        for process in processes:
            data = process["data"]
            kinds: dict[str, int] = {}
            for channel, count in data.get("subscriptions", {}).items():
                kind = channel.split(":", 1)[0]
                kinds[kind] = kinds.get(kind, 0) + count
            for kind, count in sorted(kinds.items()):
                subscriptions.add_metric([process["name"], kind], count)
            for kind, count in sorted(data.get("events", {}).items()):
                events.add_metric([process["name"], kind], count)
            counts = data.get("writes") or [0] * (len(stats.WRITE_BUCKETS) + 1)
            cumulative, buckets = 0, []
            for bound, count in zip((*stats.WRITE_BUCKETS, float("inf")), counts, strict=False):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            writes.add_metric([process["name"]], buckets, data.get("write_seconds", 0.0))
        yield subscriptions
        yield events
        yield writes

        yield GaugeMetricFamily(
            "switchboard_server_processes", "Server processes reporting.", value=len(processes)
        )
        running = GaugeMetricFamily("switchboard_tasks", "Tasks by status.", labels=["status"])
        for status, count in _counts(Task):
            running.add_metric([status], count)
        yield running
        sessions = GaugeMetricFamily(
            "switchboard_sessions", "Sessions by status.", labels=["status"]
        )
        for status, count in _counts(Session):
            sessions.add_metric([status], count)
        yield sessions


def _counts(model) -> list[tuple[str, int]]:
    from django.db.models import Count

    rows = model.objects.order_by().values_list("status").annotate(n=Count("id"))
    return sorted(rows)


def _allowed(request) -> HttpResponse | None:
    """None when the caller may read the metrics, else the refusal."""
    if settings.SWITCHBOARD["METRICS_PUBLIC"]:
        return None
    token = bearer_token([(b"authorization", request.headers.get("Authorization", "").encode())])
    if not token:
        response = JsonResponse({"detail": "a staff bearer token is needed"}, status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response
    user = ApiToken.authenticate(token)
    if user is None:
        return JsonResponse({"detail": "that token is not valid"}, status=401)
    if not user.is_staff:
        return JsonResponse({"detail": "metrics are for staff"}, status=403)
    return None


@never_cache
@require_safe
def metrics(request):
    refused = _allowed(request)
    if refused is not None:
        return refused
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessesCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

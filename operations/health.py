"""Health, readiness and Prometheus metrics, for load balancers and monitoring.

- `/healthz`: 200 while the process serves (no identity, no database).
- `/readyz`: 200 when the database and the channel layer answer, 503 with
  the reason when one does not or the process drains (live.daphne_hooks).
- `/metrics`: the Prometheus text format for a staff bearer token (or anyone
  with SWITCHBOARD_METRICS_PUBLIC=1), covering every live server process: the
  prometheus_client metrics each one counts and reports every few seconds
  (live.stats, live.metrics), each sample labelled with its `process`, and
  gauges of the deployment read from the database.
"""

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from live import daphne_hooks, stats
from live.auth import bearer_token
from live.metrics import Relay
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
    if daphne_hooks.draining():
        return JsonResponse({"status": "unavailable", "reasons": ["draining"]}, status=503)
    problems = [p for p in (database_answers(), layer_answers()) if p]
    if problems:
        return JsonResponse({"status": "unavailable", "reasons": problems}, status=503)
    return JsonResponse({"status": "ok"})


def deployment(registry: CollectorRegistry, processes: int) -> None:
    """Gauges of the whole deployment, read from the database at each scrape."""
    Gauge("switchboard_server_processes", "Server processes reporting.", registry=registry).set(
        processes
    )
    for name, doc, model in (
        ("switchboard_tasks", "Tasks by status.", Task),
        ("switchboard_sessions", "Sessions by status.", Session),
    ):
        gauge = Gauge(name, doc, ["status"], registry=registry)
        for status, count in _counts(model):
            gauge.labels(status).set(count)


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
    stats.report()  # this process's figures as of now; the others' are at most 5 s old
    processes = stats.live_processes()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Relay(stats.dumps(processes)))
    deployment(registry, len(processes))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

from asgiref.sync import sync_to_async
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from live.auth import browser_required
from live.errors import Refused
from live.validation import parse_instant, problem
from logs_app import services
from logs_app.models import LEVELS, LogEntry, level_name
from sessions_app import access


@browser_required
@ensure_csrf_cookie
def viewer(request, session_id: int):
    session = get_object_or_404(access.visible_sessions(request.user), pk=session_id)
    context = {
        "page": "logs",
        "session": session,
        "levels": list(LEVELS),
        "tasks": session.tasks.order_by("id").only("id", "name"),
    }
    return render(request, "logs_app/viewer.html", context)


def _filter(request) -> tuple[services.LogFilter, dict]:
    log_filter = services.LogFilter(
        level=services.parse_level(request.GET.get("level")),
        task_id=services.parse_id(request.GET.get("task"), "task"),
        q=request.GET.get("q", ""),
    )
    if problem(log_filter.q):
        raise Refused(problem(log_filter.q), field="q")
    times = {}
    for name in ("since", "until"):
        raw = request.GET.get(name)
        if raw:
            times[name] = parse_instant(raw, name)
    return log_filter, times


@browser_required
def download(request, session_id: int):
    """Exactly the viewer's current query, oldest first, streamed as plain text."""
    session = get_object_or_404(access.visible_sessions(request.user), pk=session_id)
    try:
        log_filter, times = _filter(request)
    except Refused as error:
        return HttpResponseBadRequest(f"{error.field}: {error.message}")
    rows = log_filter.apply(LogEntry.objects.filter(session=session))
    if "since" in times:
        rows = rows.filter(ts__gte=times["since"])
    if "until" in times:
        rows = rows.filter(ts__lte=times["until"])

    def page(after: int) -> list[LogEntry]:
        return list(rows.filter(id__gt=after).order_by("id")[:2000])

    async def lines():
        # Keyset pages of 2,000 lines: memory stays flat for any log size.
        after = 0
        while batch := await sync_to_async(page)(after):
            yield "".join(
                f"{e.ts.isoformat()} {level_name(e.level)}"
                f"{f' {e.logger}:' if e.logger else ''} {e.message}\n"
                for e in batch
            )
            after = batch[-1].pk

    response = StreamingHttpResponse(lines(), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="session-{session.pk}.log"'
    return response

"""Staff pages. They render a shell; the page modules fill it from the
channel snapshot and keep it live (static/switchboard/js/)."""

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from sessions_app import access, activity
from sessions_app.models import TASK_STATUSES, Status


@staff_member_required
@ensure_csrf_cookie
def dashboard(request):
    return render(request, "sessions_app/dashboard.html", {"page": "dashboard"})


@staff_member_required
@ensure_csrf_cookie
def sessions(request):
    context = {
        "page": "sessions",
        "statuses": Status.values,
        "status": request.GET.get("status", ""),
        "q": request.GET.get("q", ""),
    }
    return render(request, "sessions_app/sessions.html", context)


@staff_member_required
@ensure_csrf_cookie
def tasks(request):
    context = {
        "page": "tasks",
        "statuses": [s.value for s in TASK_STATUSES],
        "status": request.GET.get("status", ""),
        "session": request.GET.get("session", ""),
        "q": request.GET.get("q", ""),
    }
    return render(request, "sessions_app/tasks.html", context)


@staff_member_required
@ensure_csrf_cookie
def workspace(request, session_id: int):
    session = get_object_or_404(access.visible_sessions(request.user), pk=session_id)
    context = {
        "page": "workspace",
        "session": session,
        "can_change": access.can_change(request.user, session),
        "activity": activity.of_session(session.pk),
    }
    return render(request, "sessions_app/workspace.html", context)

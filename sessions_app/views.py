"""The pages, for staff and for those who see every session (viewers and
operators). They render a shell; the page modules fill it from the
channel snapshot and keep it live (static/switchboard/js/)."""

from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from live.auth import browser_required
from sessions_app import access, activity
from sessions_app.models import TASK_STATUSES, Status


@browser_required
@ensure_csrf_cookie
def dashboard(request):
    return render(request, "sessions_app/dashboard.html", {"page": "dashboard"})


@browser_required
@ensure_csrf_cookie
def sessions(request):
    context = {
        "page": "sessions",
        "statuses": Status.values,
        "status": request.GET.get("status", ""),
        "q": request.GET.get("q", ""),
    }
    return render(request, "sessions_app/sessions.html", context)


@browser_required
@ensure_csrf_cookie
def tasks(request):
    context = {
        "page": "tasks",
        "statuses": [s.value for s in TASK_STATUSES],
        "status": request.GET.get("status", ""),
        "session": request.GET.get("session", ""),
        "q": request.GET.get("q", ""),
        # "May act": on every task the page lists (those who see only their own
        # act on them all); a viewer's own tasks are cancelled from their session.
        "can_change": access.acts_on_all(request.user) or not access.sees_all(request.user),
    }
    return render(request, "sessions_app/tasks.html", context)


@browser_required
@ensure_csrf_cookie
def workspace(request, session_id: int):
    session = get_object_or_404(access.visible_sessions(request.user), pk=session_id)
    context = {
        "page": "workspace",
        "session": session,
        # "May act" (cancel, pause, retry, answer): controls show only then.
        "can_change": access.can_act(request.user, session),
        "activity": activity.of_session(session.pk),
    }
    return render(request, "sessions_app/workspace.html", context)

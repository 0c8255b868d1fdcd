"""The project's URLs and a probe of what the middleware gave a request
(project/tests/test_bearer_path.py, test_handler.py)."""

import threading

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from project import urls


@csrf_exempt
async def probe(request):
    return JsonResponse(
        {
            "session": hasattr(request, "session"),
            "messages": hasattr(request, "_messages"),
            "csrf": "CSRF_COOKIE" in request.META,
            "user": hasattr(request, "user"),
        }
    )


served = threading.local()


def thread(request):
    """A sync view: the thread Django ran it on, and how many requests that
    thread has served."""
    served.count = getattr(served, "count", 0) + 1
    return JsonResponse({"thread": threading.get_ident(), "served": served.count})


urlpatterns = [
    path("api/probe", probe),
    path("probe", probe),
    path("thread", thread),
    *urls.urlpatterns,
]

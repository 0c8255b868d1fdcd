"""The project's URLs and a probe of what the middleware gave a request
(project/tests/test_bearer_path.py)."""

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


urlpatterns = [path("api/probe", probe), path("probe", probe), *urls.urlpatterns]

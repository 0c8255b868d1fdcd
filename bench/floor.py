"""The framework's floor for bench/writes.py: the project's own settings,
middleware and ASGI stack, plus two endpoints that store nothing.

    DJANGO_SETTINGS_MODULE=bench.floor_settings daphne project.asgi:application

`POST /bench/django` is a plain async Django view that parses the JSON body
and answers it; `PATCH /bench/ninja/<id>` is the same through django-ninja,
with the API's token check and a body schema like the progress endpoint's.
What separates these from bench/bare.py is the framework; what separates the
progress endpoint from them is the write.
"""

import json

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Schema

from live.auth import ASYNC_AUTH
from project import urls as project_urls


@csrf_exempt
async def django_view(request):
    return JsonResponse({"progress": json.loads(request.body)["progress"]})


floor_api = NinjaAPI(urls_namespace="floor", docs_url=None, openapi_url=None)


class Report(Schema):
    progress: float


@floor_api.patch("/{int:task_id}", auth=ASYNC_AUTH)
async def ninja_view(request, task_id: int, payload: Report):
    return {"id": task_id, "progress": payload.progress}


urlpatterns = [
    *project_urls.urlpatterns,
    path("bench/django", django_view),
    path("bench/ninja/", floor_api.urls),
]

"""The v1 HTTP API: routers of both apps, one identity scheme, errors that name fields."""

from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.db import DataError
from ninja import NinjaAPI
from ninja.errors import ValidationError

from live.auth import API_AUTH
from live.errors import Refused
from logs_app.api import router as logs_router
from project import bodylimit, throttles
from project.batch import router as batch_router
from sessions_app.api import router as sessions_router
from sessions_app.questions_api import router as questions_router

api = NinjaAPI(
    title="Switchboard API",
    version="1",
    # The link is relative to these docs (/api/v1/docs), so it holds under a sub-path too.
    description=(
        "Sessions, tasks, progress and logs of long-running work. The whole contract "
        "(socket frames, this API, event files, settings): [PROTOCOL.md](protocol.md)."
    ),
    auth=API_AUTH,
    throttle=throttles.from_settings(),
    urls_namespace="api",
)
api.add_router("", sessions_router)
api.add_router("", logs_router)
api.add_router("", batch_router)
api.add_router("", questions_router)

# Where a request part sits in pydantic's error location, for naming fields.
_PARTS = {"body", "query", "path", "payload", "header", "cookie"}


def _field(loc) -> str:
    parts = [str(p) for p in loc]
    while parts and parts[0] in _PARTS:
        parts.pop(0)
    return ".".join(parts) or "body"


@api.exception_handler(ValidationError)
def invalid_input(request, exc: ValidationError):
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        message = error.get("msg", "invalid")
        errors.setdefault(_field(error.get("loc", ())), []).append(message)
    detail = "invalid input: " + ", ".join(errors)
    return api.create_response(request, {"detail": detail, "errors": errors}, status=400)


@api.exception_handler(Refused)
def refused(request, exc: Refused):
    """Every refusal of a service or a check, answered in one shape."""
    if exc.field:
        body = {"detail": f"{exc.field}: {exc.message}", "errors": {exc.field: [exc.message]}}
    else:
        body = {"detail": exc.message}
    body.update(exc.extra)  # what rides along (a 409's question, as first answered)
    return api.create_response(request, body, status=exc.status_code)


@api.exception_handler(DataError)
def out_of_range(request, exc: DataError):
    """A value the database cannot hold (an id past 64 bits, say): not found."""
    return api.create_response(
        request, {"detail": "not found: a value is out of range"}, status=404
    )


@api.exception_handler(RequestDataTooBig)
def too_large(request, exc: RequestDataTooBig):
    return api.create_response(request, {"detail": bodylimit.answer_detail()}, status=413)


@api.exception_handler(ObjectDoesNotExist)
def gone(request, exc: ObjectDoesNotExist):
    """A row deleted between the caller's check and the service's lock (a
    session deleted meanwhile): not found, as a refusal would say."""
    return api.create_response(request, {"detail": "not found"}, status=404)

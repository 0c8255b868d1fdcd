"""The contract itself, served beside the API docs that link to it."""

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_safe


@require_safe
def protocol(request):
    """docs/PROTOCOL.md as it ships with this server (Markdown, as text)."""
    try:
        text = (settings.BASE_DIR / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Http404("this installation has no docs/PROTOCOL.md") from None
    return HttpResponse(text, content_type="text/markdown; charset=utf-8")

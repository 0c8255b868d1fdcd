"""Request bodies past `SWITCHBOARD_MAX_BODY_BYTES` refused before they are held.

daphne reads a whole request body before the application is called and then
queues all of it in memory for the application, so a check in Django comes
too late: an 800 MB POST costs 800 MB first. Two guards, for every path:

- under daphne, its request class is swapped for one that answers 413 as soon
  as the headers announce too much (or, for a chunked body, as soon as too
  much has arrived), stops storing, and closes the connection; the
  application is never called (live.daphne_hooks, with `limit` and
  `answer` from here);
- under any other ASGI server, `BodyLimit` answers 413 on `Content-Length` and
  stops reading a chunked body past the limit.

The answer is JSON, like every answer under `/api/v1/`.
"""

import json

from django.conf import settings

STATUS = 413


def limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def answer_detail() -> str:
    return f"request body too large: the limit is {limit()} bytes"


def answer() -> bytes:
    return json.dumps({"detail": answer_detail()}).encode()


def announced(headers) -> int | None:
    """The Content-Length of ASGI headers, or None if absent or unreadable."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """ASGI middleware for HTTP: 413 instead of reading a body past the limit."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = announced(scope["headers"])
        if length is not None and length > limit():
            return await self.refuse(send)
        seen = 0
        over = False

        async def counted():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit():
                    # Django takes a disconnect as an abandoned request and
                    # answers nothing; the 413 is ours to send.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted, send)
        if over:
            await self.refuse(send)

    @staticmethod
    async def refuse(send) -> None:
        body = answer()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": STATUS, "headers": headers})
        await send({"type": "http.response.body", "body": body})

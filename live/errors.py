"""One exception for every refusal, whatever the transport.

A service, a channel check or a frame parser raises `Refused`; each transport
turns it into its own answer in one place: the HTTP API into a 4xx with
`errors: {field: [message]}` (project/api.py), the socket into an `error`
frame (live/consumers.py), a command into a CommandError.
"""

# The HTTP status of each code; the socket sends the code itself.
STATUS = {
    "invalid": 400,
    "invalid_action": 400,
    "invalid_json": 400,
    "invalid_channel": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}


class Refused(Exception):
    """A request refused for a reason the caller can fix or should know.

    `code` is the socket's error code ("invalid" becomes `invalid_action`
    there), `field` names the culprit, `extra` rides along in the error frame.
    """

    def __init__(
        self, message: str, *, code: str = "invalid", field: str | None = None, **extra
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.extra = extra

    @property
    def status_code(self) -> int:
        return STATUS.get(self.code, 400)

    @property
    def frame_code(self) -> str:
        return "invalid_action" if self.code == "invalid" else self.code

"""POSTing to a webhook receiver, which is untrusted.

A delivery has `DEADLINE` seconds in all to connect, send, and read the status
line and headers, whatever the receiver does: a socket timeout is per read,
and one byte a second never trips it, so the socket is cut when the time is
up. Only the status is read; a redirect is not followed. `user:password@` in a
URL is sent as HTTP Basic `Authorization`, not as part of the host. Proxies
from the environment are not used. A URL is logged, and shown in
`last_error`, only as `redact` gives it: no userinfo, no query, and no path
past its first segment (where Slack keeps its secret).
"""

import base64
import http.client
import socket
import ssl
import threading
from urllib.parse import unquote, urlsplit

DEADLINE = 10  # seconds for one delivery: connect, send, status line and headers


def redact(url: str) -> str:
    """The URL as it may be shown: `https://***@hooks.example.com/services/…?…`,
    without userinfo, query, fragment, or the path past its first segment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    first, _, rest = parts.path.lstrip("/").partition("/")
    path = (f"/{first}" + ("/…" if rest else "")) if parts.path else ""
    userinfo = "***@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{userinfo}{host}{path}" + ("?…" if parts.query else "")


def scrub(text: str, url: str) -> str:
    """`text` (an error) without the parts of `url` that `redact` hides, in
    case a library quoted them."""
    parts = urlsplit(url)
    hidden = [parts.username, parts.password, parts.query, parts.fragment]
    hidden += parts.path.lstrip("/").split("/")[1:]
    hidden += [unquote(piece) for piece in hidden if piece]
    for piece in sorted({p for p in hidden if p and len(p) >= 3}, key=len, reverse=True):
        text = text.replace(piece, "…")
    return text


class Cutoff:
    """Shuts a socket down when `seconds` have passed, waking any read or write
    blocked on it, the TLS handshake's included: the socket's own timeout is
    per operation, and a receiver that trickles a byte a second never trips it."""

    def __init__(self, seconds: float) -> None:
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.done = False
        self.expired = False
        self.timer = threading.Timer(seconds, self.cut)
        self.timer.daemon = True

    def __enter__(self) -> "Cutoff":
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        with self.lock:
            self.done = True
            if self.sock is not None:
                self.sock.close()

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            if self.expired:  # the connect outlived the deadline
                raise TimeoutError
            # A duplicate: shutting it down shuts the connection down, whatever
            # became of the original (wrapping it for TLS detaches it).
            self.sock = sock.dup()

    def cut(self) -> None:
        with self.lock:
            if self.done:
                return
            self.expired = True
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Connection(http.client.HTTPConnection):
    """HTTP, or HTTPS when given a TLS context, with a cutoff on its socket."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, cutoff: Cutoff) -> None:
        super().__init__(host, port, timeout=DEADLINE)
        self.tls = tls
        self.cutoff = cutoff
        self.default_port = 443 if tls else 80  # no port in the Host header

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            self.cutoff.watch(sock)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def post(url: str, body: bytes, extra: dict[str, str] | None = None) -> int:
    """POST `body` as JSON to `url` (with the `extra` headers) within `DEADLINE`
    seconds; the answer's status (the body is not read, a redirect not
    followed). Raises OSError, `http.client.HTTPException` or ValueError;
    TimeoutError at the deadline."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("no host in the URL")
    secure = parts.scheme == "https"
    headers = {"Content-Type": "application/json", "User-Agent": "switchboard-webhooks"}
    headers.update(extra or {})
    if parts.username is not None:
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cutoff = Cutoff(DEADLINE)
    tls = ssl.create_default_context() if secure else None
    connection = Connection(parts.hostname, parts.port or (443 if secure else 80), tls, cutoff)
    try:
        with cutoff:
            connection.request("POST", target, body=body, headers=headers)
            status = connection.getresponse().status
            if cutoff.expired:  # headers cut short read as complete ones
                raise TimeoutError
            return status
    except (OSError, http.client.HTTPException, ValueError):
        if cutoff.expired:
            raise TimeoutError(f"no answer in {DEADLINE} s")
        raise
    finally:
        connection.close()

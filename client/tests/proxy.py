"""A proxy in front of a real server that fails requests as told: to see
what the client does when an answer is lost, or the server says "later"."""

import socket
import socketserver
import threading


def read_request(conn: socket.socket) -> bytes:
    """One HTTP request, whole (urllib sends a Content-Length, never chunks)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            break
        body += more
    return head + b"\r\n\r\n" + body


class Proxy(socketserver.ThreadingTCPServer):
    """Forwards to `upstream` (a port on 127.0.0.1). `plan` says what to do
    with the next requests, one word each, then "pass" for all the rest:

    - "pass": forward, and relay the answer;
    - "lose": forward, let the server store it, and cut the connection
      instead of relaying the answer;
    - a status such as "503" or "429:1" (with its Retry-After): answer that
      without forwarding.

    `seen` lists each request's first line, in order."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, upstream: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.upstream = upstream
        self.plan: list[str] = []
        self.seen: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_step(self, first_line: str) -> str:
        with self.lock:
            self.seen.append(first_line)
            return self.plan.pop(0) if self.plan else "pass"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        request = read_request(self.request)
        if not request:
            return
        first_line = request.split(b"\r\n", 1)[0].decode()
        step = self.server.next_step(first_line)
        if step in ("pass", "lose"):
            with socket.create_connection(("127.0.0.1", self.server.upstream)) as up:
                up.sendall(request)
                answer = b""
                while more := up.recv(65536):
                    answer += more
            if step == "pass":
                self.request.sendall(answer)
            return  # "lose": the server has done it; the client hears nothing
        status, _, after = step.partition(":")
        body = b'{"detail": "not now"}'
        head = [
            f"HTTP/1.1 {status} Not Now",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        if after:
            head.append(f"Retry-After: {after}")
        self.request.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

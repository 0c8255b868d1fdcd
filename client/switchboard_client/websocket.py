"""A small WebSocket client (RFC 6455) on the standard library, for `switchboard tail`.

Text frames only, as Switchboard speaks; pings are answered, fragments joined.

    ws = WebSocket("ws://localhost:8000/ws/", {"Authorization": "Bearer sb_…"})
    ws.send('{"action": "ping"}')
    text = ws.recv(timeout=25)  # None when nothing came in time
    ws.close()
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import ssl
import struct
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
MAX_MESSAGE = 64 * 1024 * 1024


class WebSocketClosed(Exception):
    """The connection ended; `code` is the close code (1006: no close frame)."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(f"closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class HandshakeRefused(Exception):
    """The server answered the upgrade with an HTTP status instead of 101."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status


class WebSocket:
    def __init__(self, url: str, headers: dict | None = None, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"not a ws:// or wss:// URL: {url}")
        host = parts.hostname or "localhost"
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        if parts.scheme == "wss":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self._buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        netloc = host if ":" not in host else f"[{host}]"
        if parts.port:
            netloc += f":{parts.port}"
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n", 64 * 1024).decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        fields = status_line.split(" ", 2)
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        if status != 101:
            self.sock.close()
            raise HandshakeRefused(status, fields[2] if len(fields) > 2 else "")
        answer = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if answer.get("sec-websocket-accept") != expected:
            self.sock.close()
            raise HandshakeRefused(status, "bad Sec-WebSocket-Accept")
        self.sock.settimeout(None)
        self.closed = False

    # Reading.

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise WebSocketClosed(1006, "the connection was lost")
        self._buffer += data

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while marker not in self._buffer:
            if len(self._buffer) > limit:
                raise HandshakeRefused(0, "answer too long")
            self._fill()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _ready(self, timeout: float | None) -> bool:
        if self._buffer or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable)

    def recv(self, timeout: float | None = None) -> str | None:
        """The next text message, or None when none began within `timeout` seconds.
        Raises WebSocketClosed when the connection ends."""
        if self.closed:
            raise WebSocketClosed(1006, "closed")
        parts: list[bytes] = []
        while True:
            if not parts and not self._ready(timeout):
                return None
            self.sock.settimeout(60)  # a frame that began must come whole
            try:
                fin, opcode, payload = self._frame()
            except OSError as error:
                self.closed = True
                raise WebSocketClosed(1006, str(error)) from None
            finally:
                if not self.closed:
                    self.sock.settimeout(None)
            if opcode == PING:
                self._send(PONG, payload)
            elif opcode == PONG:
                pass
            elif opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                try:
                    self._send(CLOSE, payload[:2])
                except OSError:
                    pass
                self._shut()
                raise WebSocketClosed(code, payload[2:].decode(errors="replace"))
            else:
                parts.append(payload)
                if sum(map(len, parts)) > MAX_MESSAGE:
                    self._shut()
                    raise WebSocketClosed(1009, "message too large")
                if fin:
                    return b"".join(parts).decode("utf-8", errors="replace")

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read(8))[0]
        if length > MAX_MESSAGE:
            self._shut()
            raise WebSocketClosed(1009, "frame too large")
        if second & 0x80:  # servers do not mask, but read it right if one does
            mask = self._read(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(length)))
        else:
            data = self._read(length)
        return fin, opcode, data

    # Writing.

    def send(self, text: str) -> None:
        if self.closed:
            raise WebSocketClosed(1006, "closed")
        try:
            self._send(TEXT, text.encode())
        except OSError as error:
            self._shut()
            raise WebSocketClosed(1006, str(error)) from None

    def _send(self, opcode: int, payload: bytes) -> None:
        head = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            head += bytes([0x80 | length])
        elif length < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def close(self, code: int = 1000) -> None:
        if self.closed:
            return
        try:
            self._send(CLOSE, struct.pack("!H", code))
        except OSError:
            pass
        self._shut()

    def _shut(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

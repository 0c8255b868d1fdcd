"""Following a log file into a session, as `tail -F` does.

The follower reads from an open handle, so lines written to a file just
before it is rotated are not lost: it finishes the old file, then starts the
new one at its beginning. A file that gets shorter was truncated: reading
starts again from 0. Continuation lines (a traceback, indented text) join
the line before them, so a stack trace is one entry.
"""

import os
import re
from pathlib import Path

from logs_app.models import LEVELS

LEVEL_RE = re.compile(r"\b(DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)\b")
CONTINUATION_RE = re.compile(
    r"^(\s|Traceback \(most recent call last\)|During handling of|The above exception was)"
)
# The line that ends a Python traceback: the exception's name, maybe a message.
EXCEPTION_RE = re.compile(r"^[A-Za-z_][\w.]*(: .*)?$")
TRACEBACK = "Traceback (most recent call last):"


def guess_level(line: str, default: int) -> int:
    match = LEVEL_RE.search(line[:200])
    if not match:
        return default
    word = match.group(1)
    return {"WARN": LEVELS["WARNING"], "FATAL": LEVELS["CRITICAL"]}.get(word) or LEVELS[word]


class Follower:
    def __init__(self, path: Path, default_level: int = LEVELS["INFO"], from_start: bool = False):
        self.path = Path(path)
        self.default_level = default_level
        self.handle = None
        self.inode: int | None = None
        self.partial = ""
        self.pending: list[dict] = []
        self._open(at_end=not from_start)

    def poll(self) -> list[dict]:
        """Entries completed since the last call."""
        got = False
        if self.handle is None:
            self._open(at_end=False)
        if self.handle is not None:
            if os.fstat(self.handle.fileno()).st_size < self.handle.tell():
                self.handle.seek(0)  # truncated
                self.partial = ""
            got = self._consume(self.handle.read())
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current is not None and current != self.inode:  # rotated
                got = self._consume(self.handle.read()) or got
                self._end_line()
                self.handle.close()
                self._open(at_end=False)
                if self.handle is not None:
                    got = self._consume(self.handle.read()) or got
        # The newest entry may still get continuation lines; it waits one quiet poll.
        if got:
            ready, self.pending = self.pending[:-1], self.pending[-1:]
        else:
            ready, self.pending = self.pending, []
        return ready

    def close(self) -> list[dict]:
        """Everything held back, including a last line without its newline."""
        if self.handle is not None:
            self._consume(self.handle.read())
            self.handle.close()
            self.handle = None
        self._end_line()
        ready, self.pending = self.pending, []
        return ready

    def _open(self, at_end: bool) -> None:
        try:
            self.handle = open(self.path, "rb")  # noqa: SIM115 (kept open while following)
        except FileNotFoundError:
            self.handle = None
            return
        self.inode = os.fstat(self.handle.fileno()).st_ino
        if at_end:
            self.handle.seek(0, os.SEEK_END)

    def _consume(self, data: bytes) -> bool:
        if not data:
            return False
        # Undecodable bytes and NUL (which the database refuses) become U+FFFD.
        text = data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            self._add(line.rstrip("\r"))
        return True

    def _in_traceback(self) -> bool:
        """The newest entry holds a stack whose exception line is still to come."""
        message = self.pending[-1]["message"]
        if TRACEBACK not in message:
            return False
        last = message.rsplit("\n", 1)[-1]
        return last.startswith((" ", "\t")) or last == TRACEBACK

    def _end_line(self) -> None:
        if self.partial:
            self._add(self.partial)
            self.partial = ""

    def _add(self, line: str) -> None:
        if self.pending and line.strip() and CONTINUATION_RE.match(line):
            self.pending[-1]["message"] += "\n" + line
            return
        if self.pending and self._in_traceback() and EXCEPTION_RE.match(line):
            # `ValueError: bad` ends the stack it follows: same entry, an error.
            entry = self.pending[-1]
            entry["message"] += "\n" + line
            entry["level"] = max(entry["level"], LEVELS["ERROR"])
            return
        if not line.strip():
            return
        self.pending.append(
            {
                "message": line,
                "level": guess_level(line, self.default_level),
                "logger": self.path.name,
            }
        )

"""A small progress bar for long commands, written to a stream of the command."""

import time


class ProgressBar:
    """Redraws in place on a terminal; elsewhere prints a line every 10 %."""

    def __init__(self, stream, label: str, width: int = 30) -> None:
        self.stream = stream
        self.label = label
        self.width = width
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.shown = -1
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        percent = 100 if total <= 0 else int(done * 100 / total)
        if self.tty:
            now = time.monotonic()
            if now - self.last < 0.1 and done < total:
                return
            self.last = now
            filled = self.width * percent // 100
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {percent:3d}% {done}/{total}")
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
        elif percent // 10 > self.shown // 10 or (done >= total and self.shown < 100):
            self.shown = percent
            self.stream.write(f"{self.label}: {percent}% ({done}/{total})\n")

"""The command `switchboard run` starts does not outlive it.

`run` starts its command in a session (and so a process group) of its own,
so Ctrl-C and a closed terminal reach the command only through `run`, which
passes them on. That leaves the command running when `run` dies without a
chance to pass anything on (SIGKILL, the OOM killer, a crash). Two things
close that gap:

- A watchdog: a small process forked from `run` before the command starts. It
  blocks on a pipe whose only writer is `run`; the kernel closes the pipe
  however `run` ends, and the watchdog then sends the command's process group
  SIGTERM, and SIGKILL if anyone of the group is left 10 s later. When the
  command has ended first, `run` tells the watchdog so and it goes without
  touching anything (what the command left running in the background stays,
  as before). This works wherever `os.fork` does (Linux, macOS).
- On Linux, the command itself also gets SIGTERM through
  `prctl(PR_SET_PDEATHSIG)` when `run` dies, which covers the moment between
  the command's start and the watchdog learning its group. The kernel sends
  it when the thread that started the command ends, so `run` starts it from
  the main thread. Elsewhere this part is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h
GRACE = 10.0  # seconds between the watchdog's SIGTERM and its SIGKILL
RELEASE = b"-"  # the command has ended: the watchdog leaves


def death_signal(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` asking the kernel for `signum` when this process's
    current thread ends; None where there is no such thing."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None  # the signal would come when this thread ends, not the process
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def ask() -> None:  # in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # run died before the request was made
            os._exit(1)

    return ask


class Watchdog:
    """A process that ends a process group when this process is gone.

    Start it before any thread (it forks); `watch(pgid)` once the command has
    started, `release()` once it has ended."""

    def __init__(self) -> None:
        self.pid = 0
        self.fd = -1
        try:
            read, write = os.pipe()
        except OSError:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            return
        if pid == 0:
            try:
                os.close(write)
                _guard(read)
            finally:
                os._exit(0)
        os.close(read)
        self.pid, self.fd = pid, write

    def watch(self, pgid: int) -> None:
        self._say(f"{pgid}\n".encode())

    def release(self) -> None:
        """The command has ended: the watchdog goes, and is reaped."""
        if self.fd < 0:
            return
        self._say(RELEASE)
        os.close(self.fd)
        self.fd = -1
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass

    def _say(self, data: bytes) -> None:
        if self.fd >= 0:
            try:
                os.write(self.fd, data)
            except OSError:
                pass


def _guard(fd: int) -> None:
    """The watchdog's life: read until `run` is gone, then end the group."""
    # Not the terminal's: Ctrl-C and Ctrl-\ reach run's whole group, and run
    # decides what the command gets; a held stdout would keep a pipe open.
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(null, std)
    heard = b""
    while True:
        try:
            data = os.read(fd, 64)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            break
        heard += data
        if RELEASE in heard:
            return
    pgid, said, _ = heard.partition(b"\n")
    if not said or not pgid.isdigit():
        return  # run died before it said which group: the death signal covers that
    _end_group(int(pgid))


def _end_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
        os.killpg(pgid, signal.SIGCONT)  # a paused group (SIGSTOP) hears it only when going on
    except OSError:
        return
    end = time.monotonic() + GRACE
    while time.monotonic() < end:
        time.sleep(0.1)
        try:
            os.killpg(pgid, 0)
        except OSError:
            return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass

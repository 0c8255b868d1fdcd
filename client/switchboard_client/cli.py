"""The `switchboard` command: wrap a job, follow a log, list sessions.

    switchboard run --session "nightly import" [--task load] [--stale-after 30] -- ./import.sh --all
    switchboard tail 42 [--level WARNING] [--task 7] [--grep timeout]
    switchboard ls [--status running]

The server and the identity come from `--url` and `--token`, or from
SWITCHBOARD_URL and SWITCHBOARD_TOKEN. Each request rides through a server
that is away for up to 60 s (see switchboard_client.Client). A session that
is not there or not the user's to see is said as such, a refused token once;
either exits 1. A reader of stdout that stops early (`switchboard ls | head`)
ends the command quietly, with status 141 as SIGPIPE would.

`run` says on stderr which session and task it reports to, and the
session's page, then starts the command with its stdout and stderr piped: stdout goes to the
task as streamed output (coalesced a few times a second, ANSI colours and
carriage returns kept as they are), stderr lines to the session's log (a line
that names a level in its first words, such as "ERROR", gets that level;
others are INFO). Both are also passed through to this terminal. The task is
`completed` when the command exits 0 and `failed` naming the exit status
otherwise; `run` exits with the command's status (128 + N for a signal N).
When someone cancels the task, the command gets SIGTERM (SIGKILL 10 s later),
the task ends `cancelled`, and `run` exits 130.

With `--retryable`, `run` stays once the command has ended and serves
retries of its task: when someone retries it (the page's Retry button,
`POST /api/v1/tasks/<id>/retry`), the command runs again as the next attempt
of the same task, reported as the first was (see switchboard_client.serving).
It stops on Ctrl-C, SIGTERM or SIGHUP, when the task is cancelled, or after
`--retry-for` seconds without a retry (default: never), and exits with the
last attempt's status (130 when that attempt was cancelled).

The command does not outlive `run`. It runs in a process group of its own;
when `run` dies without passing a signal on (SIGKILL, a crash), a small
watchdog process it forked sends that group SIGTERM, and SIGKILL 10 s later,
and on Linux the command also gets SIGTERM from the kernel
(PR_SET_PDEATHSIG). On macOS and other systems the watchdog alone does it.
What the command leaves running after it has exited is left alone, as before
(see switchboard_client.guard). The task is made with `--stale-after`
seconds (30): while the command runs, `run` reports every third of that (the
same `stale_after` again, which changes nothing else), so a quiet command's
task stays `running`, and the task of a `run` that was killed is failed by
the server as lost, its error beginning "no report for", about that long
after.

Output is never lost without a word. Requests stay under `--max-body` bytes
(4 MiB; less if the server finds one too large), so a burst or what piled up
while the server was away goes in as many requests as it takes; NUL bytes and
undecodable bytes become U+FFFD. Lines or output that are lost all the same
(refused by the server, held past the bound while it was away, not taken
before the end) are said on stderr, once for each kind with counts, and in
the session's log as ERROR lines; the task's end is still reported, and `run`
then exits with the command's status if that is not 0, else 74 (EX_IOERR).
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

from switchboard_client import Client, Reporter, SwitchboardError
from switchboard_client.guard import Watchdog, death_signal
from switchboard_client.limits import BodyLimit
from switchboard_client.serving import RetryWait, note
from switchboard_client.websocket import HandshakeRefused, WebSocket, WebSocketClosed

CANCELLED_EXIT = 130
LOST_EXIT = 74  # sysexits.h EX_IOERR: the command succeeded, some of its output was lost
STALE_AFTER = 30  # seconds: a task whose run is gone fails as lost this soon
LEVEL_WORD = re.compile(r"\b(DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)\b")
LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


class Usage(Exception):
    """A mistake in the command line or the environment: exit 2 with the message."""


class Refused(Exception):
    """The server refused what was asked (a subscription, a session that is
    not there or not yours): exit 1 with the message."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        url = args.url or os.environ.get("SWITCHBOARD_URL") or ""
        token = args.token or os.environ.get("SWITCHBOARD_TOKEN") or ""
        if not url:
            raise Usage("no server: pass --url or set SWITCHBOARD_URL")
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise Usage(f"--url must be an http:// or https:// address, not {url!r}")
        if not token:
            raise Usage("no token: pass --token or set SWITCHBOARD_TOKEN")
        client = Client(url, token)
        code = args.handler(client, args)
        sys.stdout.flush()  # here, where a reader that has gone is caught
        return code
    except Usage as error:
        parser.error(str(error))  # exits 2
    except SwitchboardError as error:
        print(f"switchboard: {describe(error)}", file=sys.stderr)
        return 1
    except Refused as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return CANCELLED_EXIT
    except (BrokenPipeError, ReaderGone):
        return reader_gone()
    return 0


class ReaderGone(Exception):
    """Stdout's reader has gone: no OSError, so that it is not taken for a
    lost connection to the server."""


def reader_gone() -> int:
    """Whoever read stdout stopped (`switchboard ls | head`): end quietly, as
    a command killed by SIGPIPE does, and never try to write there again (not
    even the interpreter's last flush)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass
    return 128 + signal.SIGPIPE


def describe(error: SwitchboardError) -> str:
    if error.status in (401, 403):
        return token_refused(error.status)
    errors = error.body.get("errors") if isinstance(error.body, dict) else None
    if error.status == 400 and isinstance(errors, dict):
        return "refused (400): " + "; ".join(f"{k}: {v}" for k, v in errors.items())
    return str(error)


def token_refused(status: int) -> str:
    return (
        f"the token was refused ({status}): check --token or SWITCHBOARD_TOKEN,"
        " and that its user is active and may see this"
    )


def no_session(session_id) -> Refused:
    return Refused(f"there is no session {session_id} that you can see (404)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Report a job to Switchboard, or watch one."
    )
    parser.add_argument("--url", help="the server, e.g. http://localhost:8000 (SWITCHBOARD_URL)")
    parser.add_argument("--token", help="an API token (SWITCHBOARD_TOKEN)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a command as a task: its output and log live, its exit status reported",
        description="Run CMD as a task. Everything after -- is the command.",
    )
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--session", metavar="NAME", help="a new session of this name")
    where.add_argument("--session-id", metavar="ID", help="an existing session, by id")
    run.add_argument("--task", metavar="NAME", help="the task's name (default: the command)")
    run.add_argument(
        "--max-body",
        metavar="BYTES",
        type=int,
        default=Reporter.MAX_BODY,
        help=f"the largest request body to send (default {Reporter.MAX_BODY})",
    )
    run.add_argument(
        "--stale-after",
        metavar="SECONDS",
        type=int,
        default=STALE_AFTER,
        help="the task fails as lost when run has not reported for this long; run reports"
        f" a third as often while the command runs (default {STALE_AFTER})",
    )
    run.add_argument(
        "--retryable",
        action="store_true",
        help="after the command ends, stay and run it again as the next attempt whenever"
        " the task is retried (until Ctrl-C, SIGTERM or the task is cancelled)",
    )
    run.add_argument(
        "--retry-for",
        metavar="SECONDS",
        type=float,
        help="with --retryable (implied): wait this long for a retry after each attempt"
        " (default: until stopped)",
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    run.set_defaults(handler=run_command)

    tail = commands.add_parser(
        "tail", help="print a session's log, then follow it live", description=None
    )
    tail.add_argument("session", metavar="SESSION", help="the session's id")
    tail.add_argument("--level", help="minimum level (DEBUG INFO WARNING ERROR CRITICAL)")
    tail.add_argument("--task", metavar="ID", help="only this task's lines")
    tail.add_argument("--grep", metavar="TEXT", help="only lines containing TEXT")
    tail.add_argument("-n", "--lines", type=int, default=100, help="lines to start with (100)")
    tail.add_argument("--no-follow", action="store_true", help="print the newest lines and stop")
    tail.set_defaults(handler=tail_log)

    ls = commands.add_parser("ls", help="list sessions and their progress")
    ls.add_argument("--status", help="only these statuses (comma separated)")
    ls.add_argument("--limit", type=int, default=50, help="sessions at most (50)")
    ls.set_defaults(handler=list_sessions)
    return parser


# --- run ------------------------------------------------------------------------------


def run_command(client: Client, args) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise Usage("run needs a command after --, e.g. switchboard run --session x -- make")
    if args.max_body < BodyLimit.MINIMUM:
        raise Usage(f"--max-body must be at least {BodyLimit.MINIMUM} bytes")
    if not 1 <= args.stale_after <= 10**7:
        raise Usage("--stale-after must be between 1 and 10000000 seconds")
    if args.retry_for is not None and not 0 < args.retry_for <= 10**7:
        raise Usage("--retry-for must be more than 0 and at most 10000000 seconds")
    task_name = (args.task or shlex.join(cmd))[:200]
    if args.session_id:
        try:
            session = client.get_session(args.session_id)
        except SwitchboardError as error:
            raise no_session(args.session_id) if error.status == 404 else error
    else:
        session = client.create_session(args.session)
    task = client.create_task(session["id"], task_name, stale_after=args.stale_after)
    own_session = not args.session_id
    # On stderr: stdout is the command's own.
    print(
        f"switchboard run: session {session['id']} ({session['name']}), task {task['id']}:"
        f" {session_page(client, session['id'])}",
        file=sys.stderr,
        flush=True,
    )
    code, run = attempt(client, session, task, cmd, args, own_session)
    if not (args.retryable or args.retry_for is not None):
        return code
    waiting = RetryWait(client, task["id"], args.retry_for)
    number = task.get("attempt", 1)
    while run is None or not (run.cancelled.is_set() or run.interrupted):
        if run is not None:
            run.join(10)  # its threads gone before the next command forks
        bound = "" if args.retry_for is None else f" (at most {args.retry_for:g} s)"
        told = f"attempt {number} ended; waiting for a retry of task {task['id']}{bound}"
        again = waiting.wait(number, told)
        if again is None:
            note(f"{waiting.why}; exiting with attempt {number}'s status {code}")
            break
        number = again.get("attempt", number + 1)
        try:  # taken before the command starts: a retry cancelled meanwhile stays so
            client.update_task(task["id"], status="running", message=f"attempt {number}")
        except SwitchboardError as error:
            note(f"attempt {number} could not start ({describe(error)}); exiting")
            break
        note(f"task {task['id']} was retried: attempt {number} starts")
        code, run = attempt(client, session, again, cmd, args, own_session)
    return code


def attempt(client: Client, session: dict, task: dict, cmd, args, own_session: bool):
    """Run the command once as the task's current attempt: its exit status,
    and the Run (None when the command could not start)."""
    # Forked before any thread starts; the command from the main thread (see guard).
    watchdog = Watchdog()
    try:
        child = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=death_signal(),
        )
    except OSError as error:
        watchdog.release()
        message = f"could not start {cmd[0]}: {error.strerror or error}"
        print(f"switchboard: {message}", file=sys.stderr)
        client.update_task(task["id"], status="failed", error=message)
        if own_session:
            client.update_session(session["id"], status="failed")
        return (127 if isinstance(error, FileNotFoundError) else 126), None
    watchdog.watch(child.pid)
    client.update_task(task["id"], status="running", message=f"pid {child.pid}")
    run = Run(client, session, task, child, args.max_body, args.stale_after, watchdog)
    return run.wait(own_session), run


def session_page(client: Client, session_id) -> str:
    return f"{client.base_url}/sessions/{session_id}/"


class Run:
    """One command running as a task: pipes to the server, cancel and pause
    from it (SIGSTOP to the command's process group, SIGCONT on resume), and a
    report at least every third of `stale_after` until its end is sent."""

    def __init__(
        self,
        client: Client,
        session: dict,
        task: dict,
        child,
        max_body: int = Reporter.MAX_BODY,
        stale_after: int = STALE_AFTER,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.client = client
        self.session = session
        self.task_id = task["id"]
        self.child = child
        self.stale_after = stale_after
        self.watchdog = watchdog
        self.reporter = Reporter(client, session["id"], max_body=max_body)
        self.cancelled = threading.Event()
        self.paused = False  # the command's group was sent SIGSTOP (and no SIGCONT since)
        self.pausing = threading.Lock()
        self.done = threading.Event()  # the command has ended
        self.ended = threading.Event()  # the task's end is being sent
        self.interrupted = False  # a stop signal reached run and was passed on
        self.readers = [
            threading.Thread(target=self.pump_stdout, daemon=True),
            threading.Thread(target=self.pump_stderr, daemon=True),
        ]
        self.watcher = threading.Thread(target=self.watch, daemon=True)
        for thread in (*self.readers, self.watcher):
            thread.start()

    def join(self, timeout: float) -> None:
        """Wait (up to `timeout` seconds) for the threads of an ended run."""
        end = time.monotonic() + timeout
        for thread in (*self.readers, self.watcher):
            thread.join(max(0.0, end - time.monotonic()))

    def pump_stdout(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        out = sys.stdout.buffer
        fd = self.child.stdout.fileno()
        while chunk := os.read(fd, 65536):
            try:
                out.write(chunk)
                out.flush()
            except (OSError, ValueError):
                pass
            text = decoder.decode(chunk)
            if text:
                self.reporter.output(self.task_id, text)
        rest = decoder.decode(b"", final=True)
        if rest:
            self.reporter.output(self.task_id, rest)

    def pump_stderr(self) -> None:
        err = sys.stderr.buffer
        for raw in iter(self.child.stderr.readline, b""):
            try:
                err.write(raw)
                err.flush()
            except (OSError, ValueError):
                pass
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            found = LEVEL_WORD.search(line[:40])
            level = LEVEL_ALIASES.get(found[1], found[1]) if found else "INFO"
            self.reporter.log(line, level=level, task_id=self.task_id)

    def watch(self) -> None:
        """Ask the server about the task every second, and stop the command
        when it is cancelled. Every third of `stale_after` the question is a
        report instead (the same `stale_after` again: it changes nothing but
        the task's `updated_at`), so a quiet command's task is not failed as
        lost, while one whose run is killed is, soon."""
        beat = self.stale_after / 3
        last = time.monotonic()
        while not self.ended.wait(min(1.0, beat)):
            asking = not (self.done.is_set() or self.cancelled.is_set())
            try:
                # One try each: this loop is the retry, a second later.
                if time.monotonic() - last >= beat:
                    task = self.client.update_task(
                        self.task_id, stale_after=self.stale_after, retry_for=0
                    )
                    last = time.monotonic()
                elif asking:
                    task = self.client.get_task(self.task_id, retry_for=0)
                else:
                    continue
            except SwitchboardError:
                continue  # the server is away: the command goes on
            if asking and (task.get("cancel_requested") or task.get("status") == "cancelled"):
                self.cancelled.set()
                # Reports go on while the command takes its time to stop.
                threading.Thread(target=self.stop, daemon=True).start()
            elif asking:
                self.follow_pause(bool(task.get("pause_requested")))

    def follow_pause(self, pause: bool) -> None:
        """Stop the command's process group while the task is paused, and
        continue it when it is resumed (or let go on to stop: `pause` False)."""
        with self.pausing:
            if pause == self.paused:
                return
            try:
                os.killpg(self.child.pid, signal.SIGSTOP if pause else signal.SIGCONT)
            except OSError:
                return
            self.paused = pause
        said = "paused (SIGSTOP)" if pause else "resumed (SIGCONT)"
        print(f"switchboard: the task was {said}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        try:
            os.killpg(self.child.pid, signal.SIGTERM)
        except OSError:
            return
        self.follow_pause(False)  # a stopped command hears SIGTERM only when it goes on
        try:
            self.child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except OSError:
                pass

    def wait(self, own_session: bool) -> int:
        forward = {}

        def pass_on(signum, frame):  # Ctrl-C and kill reach the command, which decides
            self.interrupted = True
            try:
                os.killpg(self.child.pid, signum)
            except OSError:
                pass
            self.follow_pause(False)  # a paused command must go on to hear it

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                forward[signum] = signal.signal(signum, pass_on)
        try:
            code = self.child.wait()
            if self.watchdog is not None:
                self.watchdog.release()
            for reader in self.readers:
                reader.join(timeout=10)
        finally:
            self.done.set()
            for signum, handler in forward.items():
                signal.signal(signum, handler)
        self.reporter.output(self.task_id, "", final=True)
        # The command has ended: wait for the rest as long as the server takes
        # some of it, and 10 s more once it takes nothing.
        while True:
            sent = self.reporter.sent
            if self.reporter.flush(10) or self.reporter.sent == sent:
                break
        self.reporter.close(timeout=1)
        self.ended.set()
        status, fields = self.outcome(code)
        try:  # each call tries for the client's retry_for while the server is away
            self.client.update_task(self.task_id, status=status, **fields)
            if own_session:
                self.client.update_session(self.session["id"], status=status)
        except SwitchboardError as error:
            print(
                f"switchboard: the server did not take the task's outcome: {describe(error)}",
                file=sys.stderr,
            )
        losses = self.reporter.losses()
        for loss in losses:
            print(f"switchboard: {loss}", file=sys.stderr)
        if self.cancelled.is_set():
            return CANCELLED_EXIT
        if code == 0 and losses:
            return LOST_EXIT
        return code if code >= 0 else 128 - code

    def outcome(self, code: int) -> tuple[str, dict]:
        if self.cancelled.is_set():
            return "cancelled", {"message": "stopped: the task was cancelled"}
        if code == 0:
            return "completed", {"message": "exited with status 0"}
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return "failed", {"error": f"killed by {name}"}
        return "failed", {"error": f"exited with status {code}"}


# --- tail -----------------------------------------------------------------------------


def tail_log(client: Client, args) -> int:
    level = args.level.upper() if args.level else None
    if args.lines < 0 or args.lines > 10000:
        raise Usage("--lines must be between 0 and 10000")
    log_filter = {k: v for k, v in {"level": level, "task": args.task, "q": args.grep}.items() if v}
    # The first page through HTTP: a bad session or filter is a clear error at once.
    try:
        page = client.logs(args.session, limit=max(args.lines, 1), **log_filter)
    except SwitchboardError as error:
        raise no_session(args.session) if error.status == 404 else error
    entries = page["entries"][-args.lines :] if args.lines else []
    for entry in entries:
        print_entry(entry)
    last_id = int(page["entries"][-1]["id"]) if page["entries"] else 0
    if args.no_follow:
        return 0
    return Follow(client, args.session, log_filter, last_id).run()


def print_entry(entry: dict) -> None:
    line = f"{entry['ts'][:23]} {entry['level']:<8} "
    if entry.get("logger"):
        line += f"{entry['logger']}: "
    line += entry["message"]
    if entry.get("extra"):
        line += "  " + " ".join(
            f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in entry["extra"].items()
        )
    try:
        try:
            print(line, flush=True)
        except UnicodeEncodeError:
            print(line.encode("ascii", "backslashreplace").decode(), flush=True)
    except BrokenPipeError:
        raise ReaderGone() from None


class Follow:
    """The log over the socket, resumed from the last seq after every disconnect."""

    PING_EVERY = 25.0

    def __init__(self, client: Client, session_id, log_filter: dict, last_id: int) -> None:
        self.client = client
        self.session_id = str(session_id)
        self.filter = log_filter
        self.last_id = last_id  # the newest line printed: nothing at or before it again
        self.seq: int | None = None
        base = urllib.parse.urlsplit(client.base_url)
        scheme = "wss" if base.scheme == "https" else "ws"
        self.url = urllib.parse.urlunsplit((scheme, base.netloc, base.path + "/ws/", "", ""))

    def run(self) -> int:
        delay = 0.5
        while True:
            try:
                self.follow()
                delay = 0.5
            except HandshakeRefused as error:
                if error.status in (401, 403):  # the socket's way to refuse an identity
                    raise Refused(token_refused(error.status)) from None
                self.note(f"could not connect ({error}); trying again")
            except (OSError, WebSocketClosed) as error:
                if isinstance(error, WebSocketClosed) and error.code == 4401:
                    raise Refused(token_refused(4401)) from None  # revoked while following
                self.note(f"disconnected ({error}); resuming")
            time.sleep(delay)
            delay = min(delay * 2, 15.0)

    def note(self, text: str) -> None:
        print(f"-- {text}", file=sys.stderr, flush=True)

    def follow(self) -> None:
        ws = WebSocket(self.url, {"Authorization": f"Bearer {self.client.token}"})
        try:
            subscribe = {"action": "subscribe", "id": 1, "channel": f"logs:{self.session_id}"}
            if self.filter:
                subscribe["filter"] = self.filter
            if self.seq is not None:
                subscribe["since"] = self.seq
            ws.send(json.dumps(subscribe))
            while True:
                text = ws.recv(timeout=self.PING_EVERY)
                if text is None:
                    ws.send(json.dumps({"action": "ping"}))
                    continue
                self.handle(json.loads(text))
        finally:
            ws.close()

    def handle(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "subscribed":
            self.seq = frame.get("seq", self.seq)
            snapshot = frame.get("snapshot") or {}
            self.show(snapshot.get("entries", []))
        elif kind == "event":
            if frame.get("event") == "log.append":
                self.show(frame["data"]["entries"])
            elif frame.get("event") == "log.skipped":
                self.fetch_skipped(frame["data"])
            self.seq = frame.get("seq", self.seq)
        elif kind == "error" and frame.get("id") == 1:
            raise Refused(frame.get("message") or frame.get("code", "refused"))

    def show(self, entries: list[dict]) -> None:
        for entry in entries:
            if int(entry["id"]) > self.last_id:
                print_entry(entry)
                self.last_id = int(entry["id"])

    def fetch_skipped(self, notice: dict) -> None:
        """Lines the server held back from a flood: read them through HTTP."""
        after = int(notice["first_id"]) - 1
        last = int(notice["last_id"])
        while after < last:
            page = self.client.logs(
                self.session_id, after=after, before=last + 1, limit=10000, **self.filter
            )
            if not page["entries"]:
                break
            self.show(page["entries"])
            after = int(page["entries"][-1]["id"])


# --- ls -------------------------------------------------------------------------------


def list_sessions(client: Client, args) -> int:
    if not 1 <= args.limit <= 200:
        raise Usage("--limit must be between 1 and 200")
    page = client.request("GET", "sessions", params={"status": args.status, "limit": args.limit})
    rows = [("ID", "STATUS", "TASKS", "PROGRESS", "UPDATED", "NAME")]
    for s in page["results"]:
        total, done = s["total_tasks"], s["completed_tasks"]
        bar = progress_bar(done / total if total else 0.0)
        rows.append((s["id"], s["status"], f"{done}/{total}", bar, s["updated_at"][:19], s["name"]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    for row in rows:
        cells = [str(row[i]).ljust(widths[i]) for i in range(5)]
        print("  ".join([*cells, row[5]]))
    if page.get("next_offset") is not None:
        print(f"({len(page['results'])} of {page['count']}; --limit shows more)")
    return 0


def progress_bar(fraction: float, width: int = 10) -> str:
    filled = round(fraction * width)
    return "#" * filled + "." * (width - filled) + f" {fraction:4.0%}"


if __name__ == "__main__":
    sys.exit(main())

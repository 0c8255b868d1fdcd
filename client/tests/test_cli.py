"""The `switchboard` command, installed from ./client into a fresh virtual
environment, against a real daphne server."""

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT
from live.models import Event
from logs_app.models import LogEntry
from sessions_app.models import Session, Task

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def switchboard(tmp_path_factory) -> Path:
    """The `switchboard` script of `pip install ./client` in a new venv."""
    where = tmp_path_factory.mktemp("cli")
    source = where / "client"
    shutil.copytree(ROOT / "client", source, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    # As a user would: pip builds it with setuptools from the package index.
    subprocess.run(
        [venv / "bin/python", "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    script = venv / "bin" / "switchboard"
    assert script.exists()
    return script


def run_cli(switchboard, server, token, *args, timeout=60, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=server.url, SWITCHBOARD_TOKEN=token)
    return subprocess.run([switchboard, *args], env=env, capture_output=True, timeout=timeout, **kw)


def wait_for(check, timeout=20.0, what="the condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def output_of(task: Task) -> str:
    events = Event.objects.filter(task_id=task.pk, kind="task.output").order_by("id")
    return "".join(e.data["chunk"] for e in events)


def test_run_reports_a_command_that_prints_and_fails(switchboard, live, admin_token):
    script = (
        'printf "\\033[32mgreen\\033[0m\\n"; printf "\\r 50%%\\r100%%\\n"; '
        'echo "ERROR: the disk is full" >&2; echo "just a note" >&2; exit 3'
    )
    done = run_cli(switchboard, live, admin_token,
                   "run", "--session", "cli job", "--task", "fill", "--", "sh", "-c", script)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert b"\x1b[32mgreen" in done.stdout  # passed through to the terminal as well
    assert b"ERROR: the disk is full" in done.stderr
    session = Session.objects.get(name="cli job")
    task = session.tasks.get()
    assert (task.name, task.status, task.error) == ("fill", "failed", "exited with status 3")
    assert session.status == "failed"
    assert output_of(task) == "\x1b[32mgreen\x1b[0m\n\r 50%\r100%\n"  # kept as it was
    lines = {e.message: e.level for e in LogEntry.objects.filter(session=session)}
    assert lines == {"ERROR: the disk is full": 40, "just a note": 20}
    assert set(LogEntry.objects.filter(session=session).values_list("task", flat=True)) == {task.pk}


def test_run_completes_a_command_that_succeeds_in_a_session_that_exists(
    switchboard, live, admin_token
):
    api = live.client(admin_token)
    session = api.create_session("shared")
    done = run_cli(switchboard, live, admin_token,
                   "run", "--session-id", session["id"], "--", "echo", "hello")  # fmt: skip
    assert done.returncode == 0, done.stderr
    task = Task.objects.get(session_id=session["id"])
    assert (task.name, task.status) == ("echo hello", "completed")
    assert output_of(task) == "hello\n"
    # A session it joined is left to its owner.
    assert Session.objects.get(pk=session["id"]).status in ("pending", "running")


def test_a_cancelled_task_stops_its_command(switchboard, live, admin_token):
    api = live.client(admin_token)
    session = api.create_session("to cancel")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=live.url, SWITCHBOARD_TOKEN=admin_token)
    child = subprocess.Popen(
        [switchboard, "run", "--session-id", session["id"], "--", "sh", "-c", "echo started; sleep 60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        task = wait_for(
            lambda: Task.objects.filter(session_id=session["id"], status="running").first(),
            what="the task to run",
        )
        api.cancel_task(task.pk)
        assert child.wait(timeout=20) == 130
    finally:
        child.kill()
        child.wait()
    task.refresh_from_db()
    assert task.status == "cancelled"
    assert output_of(task) == "started\n"


def test_mistakes_are_clear(switchboard, live, admin_token):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    no_token = subprocess.run(
        [switchboard, "--url", live.url, "ls"], env=env, capture_output=True, timeout=30
    )
    assert no_token.returncode == 2 and b"SWITCHBOARD_TOKEN" in no_token.stderr
    wrong = run_cli(switchboard, live, "sb_not-a-token", "ls")
    assert wrong.returncode == 1 and b"token was refused (401)" in wrong.stderr
    no_command = run_cli(switchboard, live, admin_token, "run", "--session", "x", "--")
    assert no_command.returncode == 2 and b"needs a command" in no_command.stderr
    assert not Session.objects.filter(name="x").exists()
    missing = run_cli(
        switchboard, live, admin_token, "run", "--session", "y", "--", "no-such-cmd-zz"
    )
    assert missing.returncode == 127 and b"could not start no-such-cmd-zz" in missing.stderr
    assert Task.objects.get(session__name="y").status == "failed"
    unknown = run_cli(switchboard, live, admin_token, "tail", "999999")
    assert unknown.returncode == 1 and b"404" in unknown.stderr
    session = live.client(admin_token).create_session("levels")
    bad_level = run_cli(switchboard, live, admin_token, "tail", session["id"], "--level", "LOUD")
    assert bad_level.returncode == 1 and b"level" in bad_level.stderr


def test_ls_lists_sessions_with_their_progress(switchboard, live, admin_token):
    api = live.client(admin_token)
    session = api.create_session("listed")
    first = api.create_task(session["id"], "a")
    api.create_task(session["id"], "b")
    api.update_task(first["id"], status="completed")
    done = run_cli(switchboard, live, admin_token, "ls")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.decode().splitlines() if line.endswith("listed"))
    assert row.split()[0] == session["id"] and row.split()[2] == "1/2"
    assert "#####....." in row and "50%" in row


class Lines:
    """A child's stdout, line by line, without blocking the test."""

    def __init__(self, stream) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self.read, args=(stream,), daemon=True).start()

    def read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.queue.put(raw.decode().rstrip("\n"))

    def take(self, count: int, timeout: float = 20.0) -> list[str]:
        end = time.monotonic() + timeout
        got = []
        while len(got) < count:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {got}, wanted {count} lines")
            try:
                got.append(self.queue.get(timeout=left))
            except queue.Empty:
                continue
        return got

    def none_within(self, seconds: float) -> bool:
        try:
            line = self.queue.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected line {line!r}")


def test_tail_prints_the_newest_lines_then_follows_across_a_restart(
    switchboard, fresh_server, admin_token
):
    srv = fresh_server(SWITCHBOARD_HEAD_CHECK_SECONDS="0.5")
    api = srv.client(admin_token)
    session = api.create_session("tailed")
    api.log(session["id"], [{"message": f"old {n}"} for n in range(5)])
    api.log(session["id"], [{"message": "with fields", "extra": {"user": 7, "path": "/x"}}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=srv.url, SWITCHBOARD_TOKEN=admin_token)
    child = subprocess.Popen(
        [switchboard, "tail", session["id"], "-n", "3", "--level", "INFO"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        lines = Lines(child.stdout)
        first = lines.take(3)
        assert [line.split(" ", 2)[2].strip() for line in first[:2]] == ["old 3", "old 4"]
        message, fields = first[2].split("INFO     ", 1)[1].split("  ", 1)
        assert message == "with fields" and sorted(fields.split()) == ["path=/x", "user=7"]
        api.log(session["id"], [{"message": "live 1"}, {"message": "quiet", "level": "DEBUG"}])
        assert lines.take(1)[0].endswith("INFO     live 1")  # DEBUG is filtered out
        srv.kill()
        srv.start()
        api.log(
            session["id"], [{"message": f"after restart {n}", "level": "ERROR"} for n in range(2)]
        )
        assert [line.rsplit(" ", 3)[-3:] for line in lines.take(2)] == [
            ["after", "restart", "0"],
            ["after", "restart", "1"],
        ]
        assert lines.none_within(1.5)  # nothing printed twice
    finally:
        child.terminate()
        child.wait(10)


def test_tail_no_follow_with_a_keyword(switchboard, live, admin_token):
    api = live.client(admin_token)
    session = api.create_session("grep")
    api.log(session["id"], [{"message": m} for m in ("a timeout here", "fine", "TIMEOUT again")])
    done = run_cli(
        switchboard, live, admin_token, "tail", session["id"], "--grep", "timeout", "--no-follow"
    )
    assert done.returncode == 0, done.stderr
    messages = [line.split("INFO     ", 1)[1] for line in done.stdout.decode().splitlines()]
    assert messages == ["a timeout here", "TIMEOUT again"]


def test_run_sends_a_burst_past_the_servers_body_limit_in_full_and_in_order(
    switchboard, fresh_server, admin_token
):
    # The server takes bodies of 64 KiB; the client starts at its 4 MiB and
    # learns from the server's early 413 (or the cut connection it makes).
    srv = fresh_server(SWITCHBOARD_MAX_BODY_BYTES="65536")
    script = (
        "import sys\n"
        "out = ''.join(f'out {n} ' + 'x' * 40 + '\\n' for n in range(100000))\n"
        "sys.stdout.write(out)\n"
        "sys.stderr.write(''.join(f'err {n}\\n' for n in range(3000)))\n"
    )
    done = run_cli(switchboard, srv, admin_token,
                   "run", "--session", "burst", "--", sys.executable, "-c", script)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert b"switchboard:" not in done.stderr
    task = Task.objects.get(session__name="burst")
    assert task.status == "completed"
    expected = "".join(f"out {n} " + "x" * 40 + "\n" for n in range(100000))
    assert len(expected) > 4 * 1024 * 1024  # past the client's own limit, too
    assert output_of(task) == expected
    chunks = list(Event.objects.filter(task_id=task.pk, kind="task.output").order_by("id"))
    assert chunks[-1].data["final"] is True
    messages = list(
        LogEntry.objects.filter(session=task.session)
        .order_by("id")
        .values_list("message", flat=True)
    )
    assert messages == [f"err {n}" for n in range(3000)]


def test_run_stores_lines_with_nul_bytes_marked(switchboard, live, admin_token):
    script = "printf 'a\\000b\\n'; printf 'err\\000or\\n' >&2; printf 'fine\\n' >&2; exit 4"
    done = run_cli(switchboard, live, admin_token,
                   "run", "--session", "nul", "--", "sh", "-c", script)  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert done.stdout == b"a\x00b\n"  # the terminal gets the bytes as they came
    assert b"switchboard:" not in done.stderr
    task = Task.objects.get(session__name="nul")
    assert output_of(task) == "a\ufffdb\n"
    messages = LogEntry.objects.filter(session=task.session).order_by("id")
    assert list(messages.values_list("message", flat=True)) == ["err\ufffdor", "fine"]


def test_run_says_what_the_server_refused_and_exits_non_zero(switchboard, live, admin_token):
    """The task is deleted while its command runs: what the command prints
    next names no task of the session and is refused; it is said, not lost
    without a word."""
    api = live.client(admin_token)
    session = api.create_session("deleted under it")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=live.url, SWITCHBOARD_TOKEN=admin_token)
    script = 'echo before; while [ ! -e "$0" ]; do sleep 0.05; done; echo after; echo late >&2'
    go = Path(live.log).with_suffix(".go")
    go.unlink(missing_ok=True)
    child = subprocess.Popen(
        [switchboard, "run", "--session-id", session["id"], "--", "sh", "-c", script, str(go)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        task = wait_for(
            lambda: Task.objects.filter(session_id=session["id"], status="running").first(),
            what="the task to run",
        )
        wait_for(lambda: output_of(task) == "before\n", what="the first line")
        task.delete()
        go.touch()
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait()
        go.unlink(missing_ok=True)
    assert child.returncode == 74, err
    said = err.decode()
    assert "switchboard: refused by the server and dropped: 1 output chunks" in said
    assert "switchboard: refused by the server and dropped: 1 log lines" in said
    assert "no such task in this session" in said
    notices = LogEntry.objects.filter(session_id=session["id"], level=40).order_by("id")
    assert [n.message.split(" (")[0] for n in notices] == [
        "switchboard: refused by the server and dropped: 1 output chunks",
        "switchboard: refused by the server and dropped: 1 log lines",
    ]
    assert not LogEntry.objects.filter(message="late").exists()


def alive(pid: int) -> bool:
    """Running, not gone and not a zombie waiting for a parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(path: Path) -> int:
    text = path.read_text() if path.exists() else ""
    return int(text) if text.endswith("\n") else 0


def start_run(switchboard, server, token, *args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=server.url, SWITCHBOARD_TOKEN=token)
    return subprocess.Popen(
        [switchboard, "run", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def test_a_killed_run_takes_its_command_and_the_commands_group_with_it(
    switchboard, live, admin_token, tmp_path
):
    leader, member = tmp_path / "leader", tmp_path / "member"
    # The shell is run's child; the sleep it starts is in its group, not run's child.
    script = 'sleep 60 & echo $! > "$1"; echo $$ > "$0"; wait'
    run = start_run(switchboard, live, admin_token,
                    "--session", "killed", "--", "sh", "-c", script, leader, member)  # fmt: skip
    pids: list[int] = []
    try:
        wait_for(lambda: read_pid(member) or run.poll() is not None, what="the command")
        pids = [read_pid(leader), read_pid(member)]
        assert run.poll() is None and all(alive(pid) for pid in pids), run.stderr.read()
        run.kill()
        run.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=15, what="the command to end")
    finally:
        run.kill()
        run.wait()
        for pid in pids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def test_a_killed_runs_task_fails_as_lost_while_a_quiet_run_keeps_its_task_running(
    switchboard, fresh_server, admin_token, tmp_path
):
    srv = fresh_server(SWITCHBOARD_STALE_CHECK_SECONDS="0.2")
    pidfile = tmp_path / "pid"
    killed = start_run(switchboard, srv, admin_token, "--session", "lost", "--stale-after", "2",
                       "--", "sh", "-c", 'echo $$ > "$0"; sleep 60', pidfile)  # fmt: skip
    # Prints nothing for three times its stale_after, then succeeds.
    quiet = start_run(switchboard, srv, admin_token, "--session", "quiet", "--stale-after", "2",
                      "--", "sleep", "6")  # fmt: skip
    try:
        wait_for(lambda: read_pid(pidfile) or killed.poll() is not None, what="the command")
        assert killed.poll() is None, killed.stderr.read()
        # The command starts before run reports it running.
        lost = wait_for(
            lambda: Task.objects.filter(session__name="lost", status="running").first(),
            what="the run's task to be running",
        )
        assert lost.stale_after == 2
        killed.kill()
        killed.wait(10)
        wait_for(
            lambda: Task.objects.filter(pk=lost.pk, status="failed").first(),
            timeout=10,
            what="the killed run's task to fail",
        )
        lost.refresh_from_db()
        assert lost.error.startswith("no report for 2 s"), lost.error
        watched = Task.objects.get(session__name="quiet")
        assert watched.status == "running"
        assert quiet.wait(20) == 0, quiet.stderr.read()
        watched.refresh_from_db()
        assert watched.status == "completed"
        assert not Event.objects.filter(task_id=watched.pk, kind="task.output").exclude(
            data__chunk=""
        )  # it said nothing: only its reports kept it alive
    finally:
        for run in (killed, quiet):
            run.kill()
            run.wait()


def test_ls_into_a_reader_that_stops_early_ends_quietly(switchboard, live, admin_token):
    api = live.client(admin_token)
    for n in range(3):
        api.create_session(f"listed {n}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=live.url, SWITCHBOARD_TOKEN=admin_token)
    child = subprocess.Popen(
        [switchboard, "ls"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    child.stdout.close()  # as `| head` does once it has had enough
    err = child.stderr.read()
    assert child.wait(30) == 141, err  # 128 + SIGPIPE, as `seq 1000000 | head`
    assert err == b""


def test_run_says_its_session_and_page_before_the_command_starts(switchboard, live, admin_token):
    done = run_cli(switchboard, live, admin_token,
                   "run", "--session", "announced", "--", "sh", "-c", "echo from the command >&2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    session = Session.objects.get(name="announced")
    task = session.tasks.get()
    first, then = done.stderr.decode().splitlines()
    assert first == (
        f"switchboard run: session {session.pk} (announced), task {task.pk}:"
        f" {live.url}/sessions/{session.pk}/"
    )
    assert then == "from the command"
    assert done.stdout == b""  # stdout is the command's alone


def test_a_session_that_is_not_there_or_not_yours_is_said_plainly(
    switchboard, live, admin_token, worker_token
):
    for args in (("tail", "999999"), ("tail", "999999", "--no-follow"),
                 ("run", "--session-id", "999999", "--", "true")):  # fmt: skip
        done = run_cli(switchboard, live, admin_token, *args)
        assert done.returncode == 1
        assert done.stderr == b"switchboard: there is no session 999999 that you can see (404)\n"
    theirs = live.client(admin_token).create_session("not the worker's")
    done = run_cli(switchboard, live, worker_token, "tail", theirs["id"])
    assert done.returncode == 1
    assert f"there is no session {theirs['id']} that you can see".encode() in done.stderr


def test_tail_says_once_that_the_token_was_refused_when_it_is_revoked(
    switchboard, fresh_server, admin_token
):
    from live.models import ApiToken

    srv = fresh_server(SWITCHBOARD_IDENTITY_CHECK_SECONDS="1")
    session = srv.client(admin_token).create_session("revoked")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=srv.url, SWITCHBOARD_TOKEN=admin_token)
    child = subprocess.Popen(
        [switchboard, "tail", session["id"]], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(
            lambda: (
                srv.client(admin_token)
                .request("GET", "stats")["subscriptions"]
                .get(f"logs:{session['id']}")
            ),
            what="tail to subscribe",
        )
        ApiToken.objects.all().delete()
        assert child.wait(20) == 1
        err = child.stderr.read().decode()
    finally:
        child.kill()
        child.wait()
    assert err.count("switchboard: the token was refused (4401)") == 1, err
    assert err.count("switchboard:") == 1, err

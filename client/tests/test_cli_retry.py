"""`switchboard run --retryable` against a real daphne server: a retry of the
task runs the command again as the next attempt of the same task; a signal,
a cancelled retry or the end of `--retry-for` ends the wait; the wait rides
through a server restart."""

import os
import signal
import subprocess

import pytest
from django.db import transaction

from client.tests.test_cli import Lines, switchboard, wait_for  # noqa: F401 (fixture)
from live.models import Event
from logs_app.models import LogEntry
from sessions_app import services
from sessions_app.models import Session, Task

pytestmark = pytest.mark.timeout(180)

# Fails the first time (and leaves a flag file), succeeds once the flag is there.
FLAKY = (
    'if [ -e "$1" ]; then echo "second run"; echo "INFO: fine now" >&2; exit 0; fi;'
    ' touch "$1"; echo "first run"; echo "ERROR: not yet" >&2; exit 3'
)


def start(switchboard, server, token, *args) -> subprocess.Popen:  # noqa: F811
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=server.url, SWITCHBOARD_TOKEN=token)
    return subprocess.Popen(
        [switchboard, "run", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def output_by_attempt(task: Task) -> dict[int, str]:
    found: dict[int, str] = {}
    for event in Event.objects.filter(task_id=task.pk, kind="task.output").order_by("id"):
        attempt = event.data.get("attempt", 1)
        found[attempt] = found.get(attempt, "") + event.data.get("chunk", "")
    return found


def ended_task(name: str, attempt: int, status: str) -> Task | None:
    return Task.objects.filter(session__name=name, attempt=attempt, status=status).first()


def line_with(lines: Lines, text: str) -> str:
    """The next line of run's stderr that says `text`."""
    seen = []
    for _ in range(20):
        seen.append(lines.take(1)[0])
        if text in seen[-1]:
            return seen[-1]
    raise AssertionError(f"run did not say {text!r}: {seen}")


def waiting_line(lines: Lines) -> str:
    """The note run prints once an attempt has ended and it waits."""
    return line_with(lines, "waiting for a retry")


def retry(api, task: Task) -> dict:
    return api.request("POST", f"tasks/{task.pk}/retry", {})


def test_a_retry_runs_the_failed_command_again_as_attempt_two(
    switchboard,  # noqa: F811
    live,
    admin_token,
    tmp_path,
):
    flag = tmp_path / "flag"
    child = start(switchboard, live, admin_token, "--session", "flaky", "--retry-for", "8",
                  "--", "sh", "-c", FLAKY, "sh", str(flag))  # fmt: skip
    try:
        first = wait_for(lambda: ended_task("flaky", 1, "failed"), what="attempt 1 to fail")
        assert first.error == "exited with status 3"
        assert retry(live.client(admin_token), first)["attempt"] == 2
        # Attempt 2 completes; no further retry comes within --retry-for, and run exits 0.
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, err
    assert out == b"first run\nsecond run\n"
    task = Task.objects.get(pk=first.pk)
    assert (task.status, task.attempt, task.error) == ("completed", 2, "")
    assert output_by_attempt(task) == {1: "first run\n", 2: "second run\n"}
    lines = {e.message: e.level for e in LogEntry.objects.filter(task=task)}
    assert lines == {"ERROR: not yet": 40, "INFO: fine now": 20}
    assert Session.objects.get(pk=task.session_id).status == "completed"
    said = err.decode()
    assert "attempt 1 ended; waiting for a retry" in said
    assert "attempt 2 starts" in said
    assert "no retry within 8 s; exiting with attempt 2's status 0" in said


def test_sigterm_while_waiting_ends_run_with_the_last_attempts_status(
    switchboard,  # noqa: F811
    live,
    admin_token,
):
    child = start(switchboard, live, admin_token, "--session", "stop me", "--retryable",
                  "--", "sh", "-c", "echo once; exit 3")  # fmt: skip
    try:
        lines = Lines(child.stderr)
        assert "attempt 1 ended" in waiting_line(lines)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 3
        assert "exiting with attempt 1's status 3" in line_with(lines, "stopped by a signal")
    finally:
        child.kill()
        child.wait()
    task = Task.objects.get(session__name="stop me")
    assert (task.status, task.attempt) == ("failed", 1)


def test_a_retry_cancelled_before_it_starts_ends_the_wait(switchboard, live, admin_token):  # noqa: F811
    child = start(switchboard, live, admin_token, "--session", "called off", "--retryable",
                  "--", "sh", "-c", "echo once; exit 5")  # fmt: skip
    try:
        lines = Lines(child.stderr)
        waiting_line(lines)
        task = Task.objects.get(session__name="called off")
        with transaction.atomic():  # run never sees the pending attempt
            services.retry_task(task.pk)
            services.cancel_task(task.pk)
        assert child.wait(timeout=20) == 5
        line_with(lines, "the task was cancelled")
    finally:
        child.kill()
        child.wait()
    task.refresh_from_db()
    assert (task.status, task.attempt) == ("cancelled", 2)
    assert output_by_attempt(task) == {1: "once\n"}


def test_the_wait_rides_through_a_server_restart(
    switchboard,  # noqa: F811
    fresh_server,
    admin_token,
    tmp_path,
):
    srv = fresh_server()
    flag = tmp_path / "flag"
    child = start(switchboard, srv, admin_token, "--session", "restarted", "--retryable",
                  "--", "sh", "-c", FLAKY, "sh", str(flag))  # fmt: skip
    try:
        lines = Lines(child.stderr)
        waiting_line(lines)
        srv.kill()
        line_with(lines, "the server is away")
        srv.start()
        task = Task.objects.get(session__name="restarted")
        line_with(lines, "the server is back")
        retry(srv.client(admin_token), task)
        wait_for(lambda: ended_task("restarted", 2, "completed"), what="attempt 2 to complete")
        line_with(lines, "attempt 2 ended; waiting for a retry")
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 0
    finally:
        child.kill()
        child.wait()
    task.refresh_from_db()
    assert output_by_attempt(task) == {1: "first run\n", 2: "second run\n"}

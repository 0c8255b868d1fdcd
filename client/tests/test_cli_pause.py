"""`switchboard run` against a real server: a pause stops the command's
process group (SIGSTOP), a resume continues it (SIGCONT), a cancel while
paused still ends it; the client's wait_while_paused follows the same flag."""

import os
import subprocess
import threading
from pathlib import Path

import pytest

from client.tests.test_cli import output_of, switchboard, wait_for  # noqa: F401 (fixture)
from sessions_app.models import Task

pytestmark = pytest.mark.timeout(180)

COUNTER = (
    "import time\nn = 0\nwhile True:\n    n += 1\n    print(n, flush=True)\n    time.sleep(0.1)\n"
)


def state_of(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def lines(task: Task) -> int:
    return output_of(task).count("\n")


def still(task: Task) -> int | None:
    """The number of lines, once two looks a second apart agree."""
    before = lines(task)
    threading.Event().wait(1.0)
    after = lines(task)
    return after if after == before else None


def test_pause_stops_the_command_and_resume_continues_it(switchboard, live, admin_token):  # noqa: F811
    api = live.client(admin_token)
    session = api.create_session("to pause")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_URL=live.url, SWITCHBOARD_TOKEN=admin_token)
    child = subprocess.Popen(
        [switchboard, "run", "--session-id", session["id"], "--", "python3", "-c", COUNTER],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        task = wait_for(
            lambda: Task.objects.filter(session_id=session["id"], status="running").first(),
            what="the task to run",
        )
        pid = int(task.message.removeprefix("pid "))
        wait_for(lambda: lines(task) >= 5, what="the counter's first lines")

        assert api.pause_task(task.pk)["changed"] is True
        waited = []
        waiter = threading.Thread(
            target=lambda: waited.append(api.wait_while_paused(task.pk, 0.2)), daemon=True
        )
        waiter.start()
        wait_for(lambda: state_of(pid) == "T", what="the command to be stopped")
        held = wait_for(lambda: still(task), what="the output to stop growing")
        # Stopped: 3 s more without a line (it prints 10 a second when it runs).
        threading.Event().wait(3.0)
        assert lines(task) == held and state_of(pid) == "T"
        assert waiter.is_alive() and not waited

        assert api.resume_task(task.pk)["changed"] is True
        wait_for(lambda: lines(task) > held + 10, what="the output to grow again")
        assert state_of(pid) != "T"
        waiter.join(timeout=10)
        assert waited and waited[0]["pause_requested"] is False

        # Cancelled while paused: it is continued so that it hears SIGTERM.
        api.pause_task(task.pk)
        wait_for(lambda: state_of(pid) == "T", what="the command to be stopped again")
        api.cancel_task(task.pk)
        assert child.wait(timeout=30) == 130
    finally:
        child.kill()
        child.wait()
    stderr = child.stderr.read().decode()
    assert "the task was paused (SIGSTOP)" in stderr and "resumed (SIGCONT)" in stderr
    task.refresh_from_db()
    assert task.status == "cancelled" and task.pause_requested is False

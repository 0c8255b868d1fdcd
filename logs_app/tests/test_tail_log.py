"""Following a real file: rotation, truncation, tracebacks, and the command."""

import io
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from logs_app.management.commands.tail_log import Command
from logs_app.models import LogEntry
from logs_app.tailer import Follower
from sessions_app import services


def write(path, text, mode="a"):
    with open(path, mode) as handle:
        handle.write(text)


def messages(entries):
    return [e["message"] for e in entries]


def test_new_lines_are_followed_with_levels_and_tracebacks_kept_whole(tmp_path):
    path = tmp_path / "app.log"
    write(path, "old line\n", "w")
    follower = Follower(path)
    write(
        path, "INFO start\nERROR boom\nTraceback (most recent call last):\n  File x\nValueError\n"
    )
    write(path, "WARNING after\npart")
    got = follower.poll() + follower.poll()
    assert messages(got) == [
        "INFO start",
        "ERROR boom\nTraceback (most recent call last):\n  File x\nValueError",
        "WARNING after",
    ]
    assert [e["level"] for e in got] == [20, 40, 30]
    assert messages(follower.close()) == ["part"]


def test_a_chained_traceback_printed_to_stderr_is_one_error_entry(tmp_path):
    path = tmp_path / "job.err"
    write(path, "", "w")
    follower = Follower(path)
    stack = (
        "Traceback (most recent call last):\n"
        '  File "job.py", line 3, in <module>\n'
        "    int('x')\n"
        "ValueError: invalid literal for int() with base 10: 'x'\n"
        "\n"
        "The above exception was the direct cause of the following exception:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "job.py", line 5, in <module>\n'
        "    raise RuntimeError('bad input') from error\n"
        "RuntimeError: bad input\n"
    )
    write(path, "starting\n" + stack + "next: a plain line\npart")
    got = follower.poll() + follower.poll()
    assert messages(got) == ["starting\n" + stack.replace("\n\n", "\n").rstrip("\n"),
                             "next: a plain line"]  # fmt: skip
    assert [e["level"] for e in got] == [40, 20]
    assert messages(follower.close()) == ["part"]


def test_rotation_finishes_the_old_file_then_reads_the_new_one(tmp_path):
    path = tmp_path / "app.log"
    write(path, "", "w")
    follower = Follower(path)
    write(path, "one\n")
    assert messages(follower.poll() + follower.poll()) == ["one"]
    write(path, "two\n")  # written, then rotated before the next poll
    path.rename(tmp_path / "app.log.1")
    write(path, "three\n", "w")
    assert messages(follower.poll() + follower.poll()) == ["two", "three"]


def test_truncation_starts_again_from_the_top(tmp_path):
    path = tmp_path / "app.log"
    write(path, "a long first line\n", "w")
    follower = Follower(path, from_start=True)
    assert messages(follower.poll() + follower.poll()) == ["a long first line"]
    write(path, "new\n", "w")
    assert messages(follower.poll() + follower.poll()) == ["new"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_the_command_ships_lines_into_the_session_until_stopped(tmp_path):
    session = services.create_session(name="tail", external_id="tail-1")[0]
    path = tmp_path / "job.log"
    write(path, "before\n", "w")
    command = Command(stdout=io.StringIO())
    command.stop = threading.Event()

    def run():
        try:
            call_command(command, str(path), "--session", "tail-1", "--interval", "0.2")
        finally:
            connections.close_all()  # this thread's own connection

    runner = threading.Thread(target=run)
    runner.start()
    time.sleep(0.5)
    write(path, "ERROR first\nsecond\n")
    deadline = time.monotonic() + 20
    while LogEntry.objects.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    command.stop.set()
    runner.join(20)
    rows = list(LogEntry.objects.order_by("id").values_list("message", "level", "session_id"))
    assert rows == [("ERROR first", 40, session.pk), ("second", 20, session.pk)]


@pytest.mark.django_db
def test_the_command_refuses_an_unknown_session_or_level(tmp_path):
    with pytest.raises(CommandError, match="no session"):
        call_command("tail_log", str(tmp_path / "x.log"), "--session", "nope")
    services.create_session(name="s", external_id="s")
    with pytest.raises(CommandError, match="level"):
        call_command("tail_log", str(tmp_path / "x.log"), "--session", "s", "--level", "LOUD")


@pytest.mark.django_db
def test_the_command_names_an_ownerless_session_first_and_refuses_an_ambiguous_one(
    tmp_path, worker_user, other_user
):
    services.create_session(name="a", external_id="job", owner=worker_user)
    services.create_session(name="b", external_id="job", owner=other_user)
    with pytest.raises(CommandError, match="external_id 'job' names sessions of several owners"):
        call_command("tail_log", str(tmp_path / "x.log"), "--session", "job", "--level", "LOUD")
    # An ownerless session of that external_id is the command's own: found
    # (the bad level is what then stops it).
    services.create_session(name="c", external_id="job")
    with pytest.raises(CommandError, match="level"):
        call_command("tail_log", str(tmp_path / "x.log"), "--session", "job", "--level", "LOUD")

"""A server process's start-up objects are out of the collector's way: a full
collection does not walk them (it took 30-85 ms with them, a pause that fell
on a write being fanned out)."""

import json
import subprocess
import sys

from conftest import ROOT, database_url

PROBE = """
import gc, json
import project.asgi
print(json.dumps({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def test_importing_the_app_freezes_what_start_up_made(db):
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={"DATABASE_URL": database_url(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["frozen"] > 50_000, counts
    # What a collection still walks: what was made after the freeze.
    assert counts["tracked"] < counts["frozen"] / 20, counts

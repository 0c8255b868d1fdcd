"""The project's settings with bench/floor.py's endpoints added (bench/writes.py)."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor"

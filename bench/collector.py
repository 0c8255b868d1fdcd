"""What a full collection of Python's cyclic garbage collector costs in a
server process, with the start-up objects in the collector's generations and
frozen out of them (`gc.freeze()` at the end of project/asgi.py).

    .venv/bin/python bench/collector.py [--rounds 9]

It loads the application as daphne does (importing project.asgi, which
freezes), then thaws (`gc.unfreeze()`) and times `gc.collect()` `--rounds`
times, freezes again and times it again. A full collection is what Python
runs now and then on its own as objects pile up; while it runs, nothing else
in the process does, so its length is added to whichever write is being
fanned out at that moment. The script prints the median and the longest of
each. Only this process is involved.
"""

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("DATABASE_URL", "sqlite:///:memory:")


def collections(rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main(args) -> None:
    import project.asgi  # noqa: F401  (the application, as the server loads it)

    gc.unfreeze()
    tracked = len(gc.get_objects())
    thawed = collections(args.rounds)
    gc.freeze()
    frozen = collections(args.rounds)
    print(f"objects tracked after start-up: {tracked:,}")
    print("                      median ms   longest ms")
    for name, times in (("in the generations", thawed), ("frozen", frozen)):
        print(f"{name:<20} {statistics.median(times):10.2f} {max(times):12.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    main(parser.parse_args())

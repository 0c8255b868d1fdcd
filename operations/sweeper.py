"""Work a server process does every few seconds, on its loop, in a database thread."""

import asyncio
import logging
from collections.abc import Callable

from channels.db import database_sync_to_async

log = logging.getLogger("switchboard.operations")


class Sweeper:
    """Runs `sweep()` every `every()` seconds while the process's loop runs;
    a failed round is logged and the next one comes as usual."""

    def __init__(self, name: str, sweep: Callable[[], object], every: Callable[[], float]):
        self.name, self.sweep, self.every = name, sweep, every
        self.running: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}

    def start(self) -> None:
        """Start on this process's loop (registered with publisher.on_serve)."""
        loop = asyncio.get_running_loop()
        task = self.running.get(loop)
        if task is None or task.done():
            self.running[loop] = loop.create_task(self.forever(), name=f"switchboard-{self.name}")

    async def forever(self) -> None:
        while True:
            await asyncio.sleep(self.every())
            try:
                await database_sync_to_async(self.sweep)()
            except Exception:
                log.exception("the %s sweep failed; trying again", self.name)

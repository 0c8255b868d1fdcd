"""Layer messages leave the writer's thread here, in order, and never block it.

`events.record` registers a publish on commit; the publisher sends its
messages to the channel layer from an event loop: the server's own inside
the server (bound by BindPublisher, the ASGI application's outermost layer),
else one background loop. Work that app configs register with `on_serve()`
(a feature's sweeper) starts on the server's loop too.
"""

import asyncio
import logging
import threading
from collections.abc import Callable

from channels.layers import get_channel_layer

from live import stats

log = logging.getLogger("switchboard.events")


class Publisher:
    """Sends layer messages in order, from any thread, without blocking the writer.

    Inside the server, messages go to the server's event loop (bound by the
    ASGI application on every connection), where the in-memory layer and the
    consumers live. Elsewhere (commands, a shell) they go to one background
    loop, so a command that publishes thousands of events keeps one Redis
    connection instead of opening one per message.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[asyncio.AbstractEventLoop, asyncio.Queue] = {}
        self._background: asyncio.AbstractEventLoop | None = None
        self._guard = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, messages: list[tuple[str, dict]]) -> None:
        loop = self._target()
        loop.call_soon_threadsafe(self._enqueue, loop, messages)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything published from this process has been sent."""
        loop = self._target()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("flush() would block the loop it waits for")
        future = asyncio.run_coroutine_threadsafe(self._join(loop), loop)
        try:
            future.result(timeout)
            return True
        except TimeoutError:
            return False

    async def _join(self, loop: asyncio.AbstractEventLoop) -> None:
        queue = self._queues.get(loop)
        if queue is not None:
            await queue.join()

    def _target(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and loop.is_running() and not loop.is_closed():
            return loop
        with self._guard:
            if self._background is None or self._background.is_closed():
                self._background = asyncio.new_event_loop()
                threading.Thread(
                    target=self._background.run_forever, name="switchboard-publisher", daemon=True
                ).start()
            return self._background

    def _enqueue(self, loop: asyncio.AbstractEventLoop, messages: list[tuple[str, dict]]) -> None:
        queue = self._queues.get(loop)
        if queue is None:
            # Forget queues of loops that have ended (test runs make many).
            for old in [old for old in self._queues if old.is_closed()]:
                del self._queues[old]
            queue = self._queues[loop] = asyncio.Queue()
            loop.create_task(self._drain(queue))
        for item in messages:
            queue.put_nowait(item)

    async def _drain(self, queue: asyncio.Queue) -> None:
        layer = get_channel_layer()
        while True:
            group, message = await queue.get()
            try:
                await layer.group_send(group, message)
            except Exception:
                # The event is stored; subscribers get it on their next gap check or resume.
                log.exception("could not publish seq %s to %s", message.get("seq"), group)
            finally:
                queue.task_done()


publisher = Publisher()


_starters: list[Callable[[], None]] = []


def on_serve(start: Callable[[], None]) -> None:
    """Registers work that starts with the server's loop (a feature's sweeper):
    app configs call this, so the event log imports none of them."""
    if start not in _starters:
        _starters.append(start)


class BindPublisher:
    """The ASGI application's outermost layer: publishes go to the server's
    loop, where the consumers and the in-memory layer live, and the work
    registered with on_serve() starts there."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        publisher.bind(asyncio.get_running_loop())
        stats.live.serve()
        for start in _starters:
            start()
        return await self.inner(scope, receive, send)

"""Django's ASGI handler, with each request's sync work on a long-lived thread.

Django's handler runs every request in a `ThreadSensitiveContext` of its own,
and the first thread-sensitive call of the request (its `request_started`
receivers, a sync view, the response's `close()`, which sends
`request_finished`) makes a thread for that request, which is joined when the
request ends: creating and joining it was about half of the event loop's time
in a progress report (bench/writes.py, py-spy). asgiref lets the context be
given an executor (`ThreadSensitiveContext(executor=...)`, asgiref 3.13),
which it uses and does not shut down. So each request borrows a
one-thread executor from a pool and hands it back; the request's sync code
still runs on one thread of its own at a time, as Django expects, and a
thread's database connection is kept or closed by `close_old_connections` at
the request's end, as CONN_MAX_AGE says, instead of lingering with a dead
thread until the garbage collector finds it.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

KEEP_IDLE = 64  # idle threads kept; past that, a thread handed back ends


class OneThread(ThreadPoolExecutor):
    """A one-thread executor that knows whether it still has work: a request
    cancelled by its client leaves a sync call running, and an executor with
    work is not lent again (its thread ends once the work is done)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="switchboard-request")
        self.pending = 0
        self.counting = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        with self.counting:
            self.pending += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, future) -> None:
        with self.counting:
            self.pending -= 1


class Threads:
    """One-thread executors, lent to one request at a time."""

    def __init__(self, keep: int = KEEP_IDLE) -> None:
        self.keep = keep
        self.idle: list[OneThread] = []
        self.lock = threading.Lock()

    def take(self) -> OneThread:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return OneThread()

    def give_back(self, executor: OneThread) -> None:
        with self.lock:
            if not executor.pending and len(self.idle) < self.keep:
                self.idle.append(executor)
                return
        executor.shutdown(wait=False)


class Handler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.threads = Threads()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(executor)


def get_asgi_application() -> Handler:
    """As django.core.asgi.get_asgi_application, with the handler above."""
    django.setup(set_prefix=False)
    return Handler()

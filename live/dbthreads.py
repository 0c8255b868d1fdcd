"""Database work of async endpoints, on a few long-lived threads.

Django runs each sync view on a thread made for its request, and that thread's
database connection goes with it. The endpoints workers call most (progress
reports, output chunks, log lines) are async instead and hand their database
work to this pool: a bounded number of threads
(`SWITCHBOARD_DB_THREADS`, default 4), each keeping its connection. After each
call a connection that is broken, in a failed transaction or past its age is
closed, as Django does at the end of a request (on PostgreSQL, closing hands it
back to the connection pool). With 0 threads the work runs where Django runs a
sync view's (the request's own thread; in tests, the test's thread).
"""

import asyncio
import contextvars
import functools
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=settings.SWITCHBOARD["DB_THREADS"], thread_name_prefix="switchboard-db"
        )
    return _executor


def _call(fn, args, kwargs):
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def run(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` on a database thread, in the caller's context."""
    if not settings.SWITCHBOARD["DB_THREADS"]:
        return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)
    context = contextvars.copy_context()
    call = functools.partial(context.run, _call, fn, args, kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor(), call)


def submit(fn, *args, **kwargs) -> None:
    """`fn(*args, **kwargs)` on a database thread, not waited for (bookkeeping
    off a request's path); a failure is logged."""
    future = executor().submit(_call, fn, args, kwargs)
    future.add_done_callback(_log_failure)


def _log_failure(future) -> None:
    if future.exception() is not None:
        logging.getLogger(__name__).error("database work failed", exc_info=future.exception())

"""Let one route body drive a sync or an async repository."""

import inspect
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar, cast

from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")


async def call(
    fn: Callable[P, Awaitable[T]] | Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Await ``fn`` if it is a coroutine function, else run it in a worker thread.

    The thread keeps blocking psycopg and redis-py I/O off the event loop.
    """
    if inspect.iscoroutinefunction(fn):
        return cast(T, await fn(*args, **kwargs))
    return await run_in_threadpool(cast(Callable[P, T], fn), *args, **kwargs)

"""Run blocking work (embedding, database) in a worker thread under a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from tasks.errors import PipelineError

T = TypeVar("T")


class DeadlineExceeded(PipelineError):
    """A downstream call (embedder, database) took longer than SEARCH_TIMEOUT_S."""

    retryable = True


async def with_deadline(seconds: float, fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in the thread pool; raise :class:`DeadlineExceeded` after ``seconds``.

    The thread cannot be killed; database statements stop on their own ``statement_timeout``
    (set to the same deadline), and the request answers 504 at once.
    """
    try:
        return await asyncio.wait_for(run_in_threadpool(fn, *args), timeout=seconds)
    except TimeoutError:
        raise DeadlineExceeded(
            f"The search did not finish within {seconds:g} s (SEARCH_TIMEOUT_S)."
        ) from None

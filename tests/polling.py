"""Waiting for a condition with a deadline: the suite's one polling loop.

Most waits in the suite have an event to await, and should await it. What is
left is state another process owns (a file appearing, a socket answering, a
row in someone else's database) or a library that exposes no event (uvicorn's
``started``): those are polled here, every ``interval`` seconds, until the
check returns something truthy or ``timeout`` seconds have passed. Keeping
the loop in one place keeps the timeout message uniform and the sleeps out of
the tests themselves.

A check that finds the situation hopeless (the process it waits on has
exited) should raise: the exception ends the wait at once, with its own
message, instead of running out the clock. The deadline is looked at between
checks, so a check doing I/O bounds that I/O itself.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

#: Seconds to wait when a call site names no timeout: generous for a process
#: starting on a busy 2-core box, short enough that a hang fails the test soon.
TIMEOUT = 10.0
#: Seconds between checks: quick to notice, cheap enough for an HTTP round trip.
INTERVAL = 0.02


def _timed_out(what: str, timeout: float, explain: Callable[[], str] | None) -> AssertionError:
    """The failure names what never happened and, if asked, why (a log tail)."""
    message = f"timed out after {timeout:g} s waiting for: {what}"
    if explain is not None:
        message += "\n" + explain()
    return AssertionError(message)


@overload
async def until(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    explain: Callable[[], str] | None = None,
) -> T: ...


@overload
async def until(
    check: Callable[[], T | None],
    what: str,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    explain: Callable[[], str] | None = None,
) -> T: ...


async def until(
    check: Callable[[], Any],
    what: str,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy; return that.

    ``what`` completes "waiting for: …" in the AssertionError raised once
    ``timeout`` has passed; ``explain``, called only then, adds detail such
    as a process's log. The check always runs at least once, and once more
    after the deadline, so a wait is never shorter than ``timeout``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise _timed_out(what, timeout, explain)
        await asyncio.sleep(interval)  # nothing to await: the state lives elsewhere


def wait_until(
    check: Callable[[], T | None],
    what: str,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    explain: Callable[[], str] | None = None,
) -> T:
    """The blocking twin of :func:`until`, for sync tests and fixtures; same contract.

    An async ``check`` is refused: its coroutine is truthy, so the wait would
    pass without ever running it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # never to be awaited: spare the "never awaited" warning
            raise TypeError(f"wait_until got an async check for {what!r}: use until()")
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, explain)
        time.sleep(interval)  # nothing to wait on: the state lives in another process

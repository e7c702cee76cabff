"""c0re's in-process status bus: what makes open pages refresh on their own.

The reconcile loop, the approval queue and the admin commands call
:meth:`StatusBus.publish` after a change; every ``/events`` SSE stream waits
on it. Only a counter is shared: a page that wakes re-reads what it shows,
so a burst of changes costs one refresh, and nothing is lost by a slow page.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class StatusBus:
    def __init__(self) -> None:
        self.seq = 0
        self._changed: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def publish(self) -> None:
        """Safe from any thread; wakes every waiter once."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._wake)
                return
        self._wake()

    def _wake(self) -> None:
        self.seq += 1
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def wait(self, after: int, timeout: float) -> int:
        """The sequence number once it passes ``after``, or the same one on timeout."""
        self._loop = asyncio.get_running_loop()
        if self.seq > after:
            return self.seq
        if self._changed is None:
            self._changed = self._loop.create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._changed), timeout)
        return self.seq

    async def frames(self, ping_seconds: float = 15.0) -> AsyncIterator[bytes]:
        """SSE frames for one page: ``event: status`` on a change, a comment ping when idle."""
        seen = self.seq
        yield f"retry: 2000\nid: {seen}\nevent: hello\ndata: {seen}\n\n".encode()
        while True:
            now = await self.wait(seen, ping_seconds)
            if now == seen:
                yield b": ping\n\n"
                continue
            seen = now
            yield f"id: {seen}\nevent: status\ndata: {seen}\n\n".encode()

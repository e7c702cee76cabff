"""The event feed behind ``GET /stream``: live fan-out plus replay from disk.

Events are rows in ``broker.sqlite`` written in the same transaction as the
change they describe, so a client that reconnects with ``Last-Event-ID: N``
gets every retained event after N — across broker restarts too — and then
the live ones, none twice: the writer publishes in commit (= id) order, and
a stream only ever moves its cursor forward.

Recent events are kept in a small ring so live streams do not touch sqlite;
a cursor older than the ring reads the gap from disk in pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable

from hyperhive.broker import store
from hyperhive.broker.writer import Event

RING = 4096
PAGE = 500


class EventFeed:
    def __init__(self, reader: sqlite3.Connection) -> None:
        self.reader = reader
        self.last_id = store.last_event_id(reader)
        self._ring: deque[Event] = deque(maxlen=RING)
        self._changed: asyncio.Future[None] | None = None
        self.closed = False

    def publish(self, events: list[Event]) -> None:
        """Called by the writer after a commit, in id order."""
        self._ring.extend(events)
        self.last_id = events[-1].id
        self._notify()

    def close(self) -> None:
        """End every stream (shutdown)."""
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def after(self, cursor: int) -> list[tuple[int, str, str]]:
        """Events with id > cursor: from the ring if it reaches back far enough."""
        if cursor >= self.last_id:
            return []
        ring = self._ring
        if ring and ring[0].id <= cursor + 1:
            return [(e.id, e.kind, e.data) for e in ring if e.id > cursor][:PAGE]
        return store.events_after(self.reader, cursor, PAGE)

    async def changed(self, timeout: float) -> bool:
        """Wait for the next publish; False on timeout."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._changed), timeout)
        except TimeoutError:
            return False
        return True

    async def stream(
        self, last_event_id: int | None, ping_seconds: float, is_closing: Callable[[], bool]
    ) -> AsyncIterator[bytes]:
        """SSE frames: ``id:``, ``event:``, ``data:``; a comment ping when idle."""
        cursor = self.last_id if last_event_id is None else last_event_id
        yield b": connected\n\n"
        while not (self.closed or is_closing()):
            batch = self.after(cursor)
            if batch:
                out = []
                for eid, kind, data in batch:
                    out.append(f"id: {eid}\nevent: {kind}\ndata: {data}\n\n")
                    cursor = eid
                yield "".join(out).encode()
                continue
            with contextlib.suppress(TimeoutError):
                if not await self.changed(ping_seconds):
                    yield b": ping\n\n"

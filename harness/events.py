"""The transcript: every turn's events in ``events.sqlite`` and on an in-process bus.

Each stream-json line claude prints is one ``stream`` event between a
``turn_start`` and a ``turn_end``. Ids are sqlite rowids, so they are the SSE
``id:`` and a reconnecting page resumes with ``Last-Event-ID`` across a
reload or a harness restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperhive.clock import now_rfc3339
from hyperhive.sqlite import connect

MIGRATIONS = [
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        turn INTEGER NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    """,
]
TURN_START, STREAM, TURN_END, NOTE = "turn_start", "stream", "turn_end", "note"
QUEUE_SIZE = 1000
#: Events kept across restarts (pruned on start); a turn is typically 5-20 events.
KEEP_EVENTS = 100_000


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    turn: int
    kind: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "turn": self.turn,
            "kind": self.kind,
            "data": self.data,
        }


def _event(row: tuple[int, str, int, str, str]) -> Event:
    return Event(id=row[0], at=row[1], turn=row[2], kind=row[3], data=json.loads(row[4]))


class EventLog:
    """One writer connection; subscribers get every event appended after they joined."""

    def __init__(self, path: Path, *, keep: int = KEEP_EVENTS) -> None:
        # NORMAL under WAL loses at most the last events on power loss, never consistency;
        # FULL would fsync every line claude prints.
        self._db = connect(path, MIGRATIONS, synchronous="NORMAL")
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self._prune(keep)

    def _prune(self, keep: int) -> None:
        """Bound the file: drop all but the newest ``keep`` events (ids never repeat)."""
        self._db.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (keep,))

    def close(self) -> None:
        for queue in self._subscribers:
            queue.put_nowait(None)
        self._db.close()

    def last_turn(self) -> int:
        row = self._db.execute("SELECT MAX(turn) FROM events").fetchone()
        return int(row[0] or 0)

    def append(self, turn: int, kind: str, data: dict[str, Any]) -> Event:
        at = now_rfc3339()
        cur = self._db.execute(
            "INSERT INTO events (at, turn, kind, data) VALUES (?, ?, ?, ?)",
            (at, turn, kind, json.dumps(data, ensure_ascii=False)),
        )
        event = Event(id=int(cur.lastrowid or 0), at=at, turn=turn, kind=kind, data=data)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a stuck reader is cut off; its client resumes by id
                self._subscribers.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
        return event

    def after(self, last_id: int, limit: int = 500) -> list[Event]:
        rows = self._db.execute(
            "SELECT id, at, turn, kind, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (last_id, limit),
        ).fetchall()
        return [_event(r) for r in rows]

    def recent(self, limit: int = 300) -> list[Event]:
        rows = self._db.execute(
            "SELECT id, at, turn, kind, data FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_event(r) for r in reversed(rows)]

    async def follow(self, last_id: int | None) -> AsyncGenerator[Event, None]:
        """History (after ``last_id``, or the recent tail when ``None``), then live events."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            backlog = self.recent() if last_id is None else self.after(last_id, limit=10_000)
            seen = backlog[-1].id if backlog else (last_id or 0)
            for event in backlog:
                yield event
            while (live := await queue.get()) is not None:
                if live.id > seen:
                    seen = live.id
                    yield live
        finally:
            self._subscribers.discard(queue)

    @property
    def followers(self) -> int:
        """How many live readers are attached (tests wait for a stream to be live)."""
        return len(self._subscribers)

"""The one writer: a thread that group-commits every change to ``broker.sqlite``.

Callers on the event loop submit a job (a function of a :class:`Tx`); the
thread takes every job queued so far, runs them in one ``BEGIN IMMEDIATE``
transaction (each inside its own savepoint, so one failing job does not undo
its neighbours), commits once — one fsync for the whole batch — and only then
hands the results back to the loop. So a ``201`` is never sent for a send
that is not on disk, and under load many sends share one fsync.

After the commit the loop runs, in commit order, each job's ``on_commit``
(the in-memory effects: ready queues, wake-ups) and publishes the batch's
events, before resolving the futures. ``on_commit`` runs even if the
caller has gone away, so memory never disagrees with the disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hyperhive.broker.errors import ShuttingDown

from hyperhive.clock import Clock, rfc3339
from hyperhive.errors import HiveError

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 2000


@dataclass(frozen=True)
class Event:
    """A committed event; ``data`` is the JSON text clients see (it includes the id)."""

    id: int
    kind: str
    data: str


class Tx:
    """What a job sees: the connection inside the open transaction, and the batch time."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn = conn
        self.now = now
        self.events: list[Event] = []

    def event(self, kind: str, message_id: int | None, data: dict[str, Any]) -> int:
        """Record an event in the same transaction as the change it describes."""
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        cur = self.conn.execute(
            "INSERT INTO events (kind, message_id, at, data) VALUES (?, ?, ?, ?)",
            (kind, message_id, self.now, payload),
        )
        eid = int(cur.lastrowid or 0)
        self.events.append(Event(eid, kind, render_event(eid, kind, self.now, payload)))
        return eid


def render_event(eid: int, kind: str, at: float, payload: str) -> str:
    """The SSE ``data:`` line of an event, the same when live and when replayed."""
    head = json.dumps({"id": eid, "kind": kind, "at": rfc3339(at)}, separators=(",", ":"))
    if payload == "{}":
        return head
    return head[:-1] + "," + payload[1:]


@dataclass
class _Job(Generic[T]):
    run: Callable[[Tx], T]
    on_commit: Callable[[T], None] | None
    future: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = None
    events: list[Event] = field(default_factory=list)


class Writer:
    """Owns the write connection; see the module docstring for the batching contract."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        clock: Clock,
        publish: Callable[[list[Event]], None],
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._publish = publish
        self._jobs: list[_Job[Any]] = []
        self._cv = threading.Condition()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.jobs_done = 0
        self.commit_seconds = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="broker-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Commit everything already submitted, then end the thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        # Let the last batch's callbacks run before the caller closes anything.
        await asyncio.sleep(0)

    def submit(
        self, run: Callable[[Tx], T], on_commit: Callable[[T], None] | None = None
    ) -> asyncio.Future[T]:
        if self._loop is None:
            raise RuntimeError("writer not started")
        fut: asyncio.Future[T] = self._loop.create_future()
        with self._cv:
            if self._stopping:
                raise ShuttingDown("the broker is shutting down")
            self._jobs.append(_Job(run, on_commit, fut))
            if len(self._jobs) == 1:
                self._cv.notify()
        return fut

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._stopping:
                    self._cv.wait()
                if not self._jobs:
                    return
                batch = self._jobs[:MAX_BATCH]
                del self._jobs[:MAX_BATCH]
            self._commit(batch)
            if self._loop is None:
                return
            try:
                self._loop.call_soon_threadsafe(self._finish, batch)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    def _commit(self, batch: list[_Job[Any]]) -> None:
        """One transaction for the batch; a failing job is isolated on a second try.

        The fast path runs the jobs back to back: a savepoint per job would
        double the statements (and the writer's GIL hand-offs) for a failure
        that almost never happens. If a job does raise, the transaction is
        rolled back and the batch is run again with a savepoint around each
        job, so only that job fails.
        """
        started = time.perf_counter()
        try:
            if not self._attempt(batch, isolate=False):
                self._attempt(batch, isolate=True)
        except sqlite3.Error as e:
            log.exception("commit of a batch of %d failed", len(batch))
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            for job in batch:
                job.error = HiveError(f"storage error: {e}", code="storage")
                job.events = []
        self.batches += 1
        self.jobs_done += len(batch)
        self.commit_seconds += time.perf_counter() - started

    def _attempt(self, batch: list[_Job[Any]], *, isolate: bool) -> bool:
        """Run and commit the batch; False (rolled back) if a job failed on the fast path."""
        conn = self._conn
        tx = Tx(conn, self._clock.now())
        conn.execute("BEGIN IMMEDIATE")
        for job in batch:
            job.error = None
            mark = len(tx.events)
            if isolate:
                conn.execute("SAVEPOINT job")
            try:
                job.result = job.run(tx)
            except Exception as e:
                if not isolate:
                    conn.execute("ROLLBACK")
                    return False
                job.error = e
                del tx.events[mark:]
                conn.execute("ROLLBACK TO job")
            if isolate:
                conn.execute("RELEASE job")
            job.events = tx.events[mark:]
        conn.execute("COMMIT")
        return True

    def _finish(self, batch: list[_Job[Any]]) -> None:
        events = [ev for job in batch for ev in job.events]
        for job in batch:
            if job.error is None and job.on_commit is not None:
                try:
                    job.on_commit(job.result)
                except Exception:
                    log.exception("on_commit failed")
        if events:
            self._publish(events)
        for job in batch:
            if job.future.done():
                continue
            if job.error is None:
                job.future.set_result(job.result)
            else:
                job.future.set_exception(job.error)

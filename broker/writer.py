"""The one writer: group-commits every change to ``broker.sqlite``.

Callers on the event loop submit a job (a function of a :class:`Tx`). The
writer takes every job queued so far, runs their statements in one
``BEGIN IMMEDIATE`` transaction on the loop thread (a few microseconds each),
and hands only the ``COMMIT`` — the fsync — to a dedicated commit thread,
which runs without the GIL. Jobs that arrive meanwhile queue up and form the
next batch. Only after the commit are the results handed back, so a ``201``
is never sent for a send that is not on disk, and under load many sends
share one fsync. (Running the statements on a thread of their own would
make every one of them wait for the busy loop to yield the GIL.)

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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hyperhive.broker.errors import ShuttingDown
from hyperhive.clock import Clock, rfc3339
from hyperhive.errors import HiveError

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 2000
#: The longest a lazy job waits for a batch to ride along with.
LAZY_DELAY = 0.05
#: A batch this small commits on the loop thread itself. Handing the COMMIT
#: to the commit thread and back (executor queue, thread wake-up, GIL
#: hand-over, loop wake-up) costs ~0.3-0.5 ms on a busy 2-core box, as much
#: as the fsync; a small batch means the loop has little else to do meanwhile.
INLINE_BATCH = 4


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
        #: The batch time as RFC 3339, formatted once: strftime is slow and
        #: every job in the batch shares the same time.
        self.now_text = rfc3339(now)
        self.events: list[Event] = []

    def event(self, kind: str, message_id: int | None, data: dict[str, Any]) -> int:
        """Record an event in the same transaction as the change it describes."""
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        cur = self.conn.execute(
            "INSERT INTO events (kind, message_id, at, data) VALUES (?, ?, ?, ?)",
            (kind, message_id, self.now, payload),
        )
        eid = int(cur.lastrowid or 0)
        self.events.append(Event(eid, kind, render_event(eid, kind, self.now_text, payload)))
        return eid


def render_event(eid: int, kind: str, at: str, payload: str) -> str:
    """The SSE ``data:`` line of an event, the same when live and when replayed."""
    head = f'{{"id":{eid},"kind":"{kind}","at":"{at}"'
    if payload == "{}":
        return head + "}"
    return head + "," + payload[1:]


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
        self._busy = False
        self._lazy_timer: asyncio.TimerHandle | None = None
        self._stopping = False
        self._drained = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fsync: ThreadPoolExecutor | None = None
        self.batches = 0
        self.jobs_done = 0
        self.commit_seconds = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._fsync = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-commit")

    async def stop(self) -> None:
        """Commit everything already submitted, then end the commit thread."""
        self._stopping = True
        self._kick()
        if self._busy:
            await self._drained.wait()
        if self._fsync is not None:
            self._fsync.shutdown(wait=True)

    def submit(
        self,
        run: Callable[[Tx], T],
        on_commit: Callable[[T], None] | None = None,
        *,
        lazy: bool = False,
    ) -> asyncio.Future[T]:
        """Queue a job; its future resolves after the commit that contains it.

        A ``lazy`` job (a record nobody waits for) does not start a commit of
        its own: it rides along with the next batch, or at the latest after
        :data:`LAZY_DELAY` seconds, so it costs no extra fsync.
        """
        if self._loop is None:
            raise RuntimeError("writer not started")
        if self._stopping:
            raise ShuttingDown("the broker is shutting down")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.append(_Job(run, on_commit, fut))
        if self._busy:
            return fut
        if lazy:
            if self._lazy_timer is None:
                self._lazy_timer = self._loop.call_later(LAZY_DELAY, self._kick)
        else:
            self._kick()
        return fut

    def _kick(self) -> None:
        """Start a batch on the next loop turn, so jobs submitted in this one join it."""
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        if self._busy or not self._jobs or self._loop is None:
            return
        self._busy = True
        self._drained.clear()
        self._loop.call_soon(self._next_batch)

    def _next_batch(self) -> None:
        """Run the queued jobs' statements here, then COMMIT on the commit thread."""
        if not self._jobs:
            self._busy = False
            self._drained.set()
            return
        if self._loop is None or self._fsync is None:
            raise RuntimeError("writer not started")
        batch = self._jobs[:MAX_BATCH]
        del self._jobs[:MAX_BATCH]
        started = time.perf_counter()
        try:
            if not self._attempt(batch, isolate=False):
                self._attempt(batch, isolate=True)
        except sqlite3.Error as e:
            self._failed(batch, e)
            self._loop.call_soon(self._next_batch)
            return
        if len(batch) <= INLINE_BATCH:
            # Little load: commit right here. The next batch starts on the
            # next loop turn, after the tasks this one woke have run.
            error: BaseException | None = None
            try:
                self._commit_now()
            except sqlite3.Error as e:
                error = e
            self._settle(batch, error, started)
            self._loop.call_soon(self._next_batch)
            return
        commit = self._loop.run_in_executor(self._fsync, self._commit_now)
        commit.add_done_callback(lambda f: self._committed(batch, f, started))

    def _commit_now(self) -> None:
        """The fsync: on the commit thread (without the GIL) unless the batch is small."""
        self._conn.execute("COMMIT")

    def _committed(
        self, batch: list[_Job[Any]], commit: asyncio.Future[None], started: float
    ) -> None:
        self._settle(batch, commit.exception(), started)
        self._next_batch()

    def _settle(self, batch: list[_Job[Any]], error: BaseException | None, started: float) -> None:
        if error is None:
            self._finish(batch)
        else:
            self._failed(batch, error)
        self.batches += 1
        self.jobs_done += len(batch)
        self.commit_seconds += time.perf_counter() - started

    def _failed(self, batch: list[_Job[Any]], error: BaseException) -> None:
        log.error("commit of a batch of %d failed: %s", len(batch), error)
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        for job in batch:
            job.events = []
            if not job.future.done():
                job.future.set_exception(HiveError(f"storage error: {error}", code="storage"))

    def _attempt(self, batch: list[_Job[Any]], *, isolate: bool) -> bool:
        """Run the batch's statements in one open transaction (COMMIT comes after).

        The fast path runs the jobs back to back: a savepoint per job would
        double the statements for a failure that almost never happens. If a
        job raises, the transaction is rolled back and this runs again with a
        savepoint around each job, so only that job fails. False means
        "rolled back, run me isolated".
        """
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

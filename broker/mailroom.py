"""Mailboxes, leases and wake-ups: the broker's domain, on top of the writer.

The disk holds messages; memory holds what is cheap to rebuild and must be
fast: each open mailbox's ready ids (a heap, oldest first) and the leases
handed out by ``recv``. A restart rebuilds the ready heaps from the
``messages_pending`` index and starts with no leases — every unacked message
is ready again, and a voided lease does not count as a failed delivery.

Wake-up is pushed: when a commit makes a message ready, the mailbox's
waiters (long-polling ``recv`` calls) are woken at once; nobody polls sqlite.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import heapq
import logging
import sqlite3
from collections import deque
from dataclasses import dataclass, field

from hyperhive.broker import store
from hyperhive.broker.errors import Conflict, NotFound, ShuttingDown
from hyperhive.broker.settings import BrokerSettings
from hyperhive.broker.writer import Writer
from hyperhive.clock import Clock
from hyperhive.names import MANAGER_MAILBOX, OPERATOR

log = logging.getLogger(__name__)

#: The most just-committed messages a mailbox keeps for its parked readers.
FRESH_MAX = 64


@dataclass
class Lease:
    message_id: int
    mailbox: str
    expires_at: float
    #: Set while an ack, nack or expiry of this lease is being committed.
    settling: bool = False


@dataclass
class Mailbox:
    name: str
    ready: list[int] = field(default_factory=list)
    queued: set[int] = field(default_factory=set)
    #: Parked ``recv`` calls, oldest first. One message wakes one of them, so
    #: many readers on one mailbox are not all woken for every send.
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    #: New messages made ready while a reader was parked, as just committed:
    #: the woken reader takes the row from here instead of reading it back
    #: (the read right after another connection's commit is the slow one).
    #: Bounded: kept only for a parked reader, and at most FRESH_MAX.
    fresh: dict[int, store.Message] = field(default_factory=dict)

    def push(self, mid: int, message: store.Message | None = None) -> None:
        if mid not in self.queued:
            self.queued.add(mid)
            heapq.heappush(self.ready, mid)
            if message is not None and self.waiters and len(self.fresh) < FRESH_MAX:
                self.fresh[mid] = message
        self.wake_one()

    def pop(self) -> tuple[int, store.Message | None] | None:
        """The oldest ready id, and its row if it was kept in :attr:`fresh`."""
        while self.ready:
            mid = heapq.heappop(self.ready)
            if mid in self.queued:
                self.queued.discard(mid)
                return mid, self.fresh.pop(mid, None)
        return None

    def park(self, fut: asyncio.Future[None]) -> None:
        if len(self.waiters) > 64:  # drop the ones that timed out or hung up
            self.waiters = deque(f for f in self.waiters if not f.done())
        self.waiters.append(fut)

    def waiting(self) -> int:
        return sum(not f.done() for f in self.waiters)

    def wake_one(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def wake_all(self) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()


def _resolve(fut: asyncio.Future[None], _: object = None) -> None:
    if not fut.done():
        fut.set_result(None)


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("recording a delivery failed: %s", fut.exception())


class Mailroom:
    def __init__(
        self,
        writer: Writer,
        reader: sqlite3.Connection,
        clock: Clock,
        settings: BrokerSettings,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.clock = clock
        self.settings = settings
        self.boxes: dict[str, Mailbox] = {}
        self.leases: dict[int, Lease] = {}
        #: Delivery counts handed out by this process, ahead of their commit.
        self.attempts: dict[int, int] = {}
        self.closing = False
        self._lease_changed = asyncio.Event()

    def load(self) -> None:
        """Rebuild memory from disk at start: open mailboxes and their ready ids."""
        for name in store.mailbox_names(self.reader):
            self._attach(name)

    def _attach(self, name: str) -> Mailbox:
        box = self.boxes.get(name)
        if box is None:
            box = self.boxes[name] = Mailbox(name)
            for mid in store.pending_ids(self.reader, name):
                if mid not in self.leases:
                    box.push(mid)
        return box

    def _make_ready(self, recipient: str, mid: int, message: store.Message | None = None) -> None:
        box = self.boxes.get(recipient)
        if box is not None:
            box.push(mid, message)

    # --- mailboxes --------------------------------------------------------------

    async def open(self, name: str) -> bool:
        """Store the mailbox; True if it is new. Its socket is the daemon's business."""

        def attach(_new: bool) -> None:
            self._attach(name)

        return await self.writer.submit(lambda tx: store.open_mailbox(tx, name), attach)

    async def close(self, name: str, *, purge: bool = False) -> bool:
        def detach(_existed: bool) -> None:
            box = self.boxes.pop(name, None)
            if box is not None:
                box.wake_all()
            for mid in [m for m, lease in self.leases.items() if lease.mailbox == name]:
                del self.leases[mid]

        return await self.writer.submit(lambda tx: store.close_mailbox(tx, name, purge), detach)

    def recipient(self, to: str) -> str:
        """Check a ``to``: an open mailbox or ``operator``; ``hm1nd`` means ``manager``."""
        if to == "hm1nd":
            to = MANAGER_MAILBOX
        if to != OPERATOR and to not in self.boxes:
            raise NotFound(f"unknown recipient {to!r}")
        return to

    # --- messages ---------------------------------------------------------------

    async def send(self, sender: str, to: str, body: str, key: str | None) -> store.Sent:
        recipient = self.recipient(to)

        def ready(sent: store.Sent) -> None:
            if sent.created:
                self._make_ready(sent.recipient, sent.id, sent.message)

        return await self.writer.submit(
            lambda tx: store.insert_message(tx, sender, recipient, body, key), ready
        )

    async def recv(
        self, mailbox: str, wait: float, gone: asyncio.Future[None] | None = None
    ) -> store.Message | None:
        """Lease the oldest ready message, waiting up to ``wait`` seconds for one.

        ``gone`` resolves when the client hangs up: a waiting call then leaves
        without taking anything, so no message is leased to a closed socket
        (and the wake-up it may have used is passed on to the next reader).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            box = self.boxes.get(mailbox)
            if box is None:
                return None
            if self.closing or (gone is not None and gone.done()):
                if box.ready:
                    box.wake_one()
                return None
            popped = box.pop()
            if popped is not None:
                mid, msg = popped
                if msg is None:
                    msg = store.message(self.reader, mid)
                if msg is None or msg.acked_at is not None or msg.dead_at is not None:
                    continue  # purged with its mailbox meanwhile
                return self._lease(box, msg)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            fut: asyncio.Future[None] = loop.create_future()
            box.park(fut)
            wake = functools.partial(_resolve, fut)
            if gone is not None:
                gone.add_done_callback(wake)
            # A timer resolving the future, not asyncio.wait_for: that wraps the
            # wait in a second future, one more loop turn between the wake-up
            # and this task running again.
            timeout = loop.call_later(remaining, wake)
            try:
                await fut
            finally:
                timeout.cancel()
                if gone is not None:
                    gone.remove_done_callback(wake)
                fut.cancel()

    def _lease(self, box: Mailbox, msg: store.Message) -> store.Message:
        """Hand a message out under a new lease.

        The delivery count rides along with the next commit (at most 50 ms
        later) and is not awaited: the lease itself lives in memory and dies
        with the process anyway, so an fsync here would only add latency and
        load. Should the broker crash before that commit, ``attempt`` may
        repeat; no message is lost.
        """
        mid = msg.id
        attempt = max(msg.attempts, self.attempts.get(mid, 0)) + 1
        self.attempts[mid] = attempt
        self.leases[mid] = Lease(mid, box.name, self.clock.now() + self.settings.lease_seconds)
        self._lease_changed.set()
        fut = self.writer.submit(lambda tx: store.deliver(tx, mid, attempt), lazy=True)
        fut.add_done_callback(_log_failure)
        return dataclasses.replace(msg, attempts=attempt)

    def _held(self, mailbox: str, mid: int) -> Lease:
        lease = self.leases.get(mid)
        if lease is None or lease.mailbox != mailbox or lease.settling:
            raise Conflict(f"message {mid} is not leased to {mailbox}")
        return lease

    async def ack(self, mailbox: str, mid: int) -> None:
        lease = self._held(mailbox, mid)
        lease.settling = True

        def done(_: None) -> None:
            self.leases.pop(mid, None)
            self.attempts.pop(mid, None)

        try:
            await self.writer.submit(lambda tx: store.ack(tx, mid, mailbox), done)
        except BaseException:
            lease.settling = False
            raise

    async def nack(self, mailbox: str, mid: int) -> None:
        await self._fail(self._held(mailbox, mid), "nack")

    def renew(self, mailbox: str, mid: int) -> float:
        lease = self._held(mailbox, mid)
        lease.expires_at = self.clock.now() + self.settings.lease_seconds
        return lease.expires_at

    async def _fail(self, lease: Lease, reason: str) -> None:
        lease.settling = True
        mid = lease.message_id
        max_failures = self.settings.max_failures

        def done(outcome: store.Failed) -> None:
            self.leases.pop(mid, None)
            if outcome.dead:
                self.attempts.pop(mid, None)
            else:
                self._make_ready(lease.mailbox, mid)
            if outcome.notice is not None:
                log.warning("message %d to %s dead-lettered", mid, lease.mailbox)
                self._make_ready(MANAGER_MAILBOX, outcome.notice.id)

        try:
            await self.writer.submit(lambda tx: store.fail(tx, mid, reason, max_failures), done)
        except BaseException:
            lease.settling = False
            raise

    # --- time-driven work ---------------------------------------------------------

    async def expire_leases(self) -> int:
        """Fail every lease past its time; tests call this after moving a fake clock."""
        now = self.clock.now()
        due = [le for le in self.leases.values() if le.expires_at <= now and not le.settling]
        if due:
            await asyncio.gather(*(self._fail(le, "expire") for le in due))
        return len(due)

    async def run_lease_expiry(self) -> None:
        """Sleep until the next lease is due (or a new one appears), then expire."""
        while True:
            self._lease_changed.clear()
            await self.expire_leases()
            live = [le.expires_at for le in self.leases.values() if not le.settling]
            delay = min(live) - self.clock.now() if live else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lease_changed.wait(), max(0.01, min(delay, 3600.0)))

    async def retain(self) -> int:
        """Delete finished messages older than ``retention_days``; returns how many."""
        cutoff = self.clock.now() - self.settings.retention_days * 86400
        n = await self.writer.submit(lambda tx: store.purge_done(tx, cutoff))
        if n:
            log.info("retention deleted %d messages", n)
        return n

    async def run_retention(self) -> None:
        while True:
            try:
                await self.retain()
            except ShuttingDown:
                return
            await asyncio.sleep(self.settings.retention_interval)

    def shut(self) -> None:
        """Stop handing out messages: every waiting ``recv`` returns 204 now."""
        self.closing = True
        for box in self.boxes.values():
            box.wake_all()

    # --- reading ------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        counts = store.counts(self.reader)
        leased: dict[str, int] = {}
        for lease in self.leases.values():
            leased[lease.mailbox] = leased.get(lease.mailbox, 0) + 1
        boxes = {}
        for name in sorted(set(self.boxes) | {OPERATOR}):
            c = counts.get(name, {"pending": 0, "acked": 0, "dead": 0})
            held = leased.get(name, 0)
            boxes[name] = {
                "depth": c["pending"] - held,
                "leased": held,
                "waiting": self.boxes[name].waiting() if name in self.boxes else 0,
                "acked": c["acked"],
                "dead": c["dead"],
                "open": name in self.boxes,
            }
        totals = {
            "messages": sum(sum(c.values()) for c in counts.values()),
            "pending": sum(c["pending"] for c in counts.values()),
            "leased": len(self.leases),
            "acked": sum(c["acked"] for c in counts.values()),
            "dead": sum(c["dead"] for c in counts.values()),
            "mailboxes": len(self.boxes),
        }
        w = self.writer
        writer = {
            "batches": w.batches,
            "jobs": w.jobs_done,
            "commit_seconds": round(w.commit_seconds, 3),
        }
        return {"mailboxes": boxes, "totals": totals, "writer": writer}

    def state_of(self, msg: store.Message) -> str:
        if msg.dead_at is not None:
            return "dead"
        if msg.acked_at is not None:
            return "acked"
        return "leased" if msg.id in self.leases else "ready"

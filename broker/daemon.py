"""The broker process: one event loop, one TaskGroup, every resource opened in a lifespan.

:class:`Broker` opens ``broker.sqlite`` (the writer's connection and a
read-only one for the loop), rebuilds memory, and serves the
control socket plus one socket per stored mailbox. Its ``run()`` lifespan owns
a single TaskGroup: listeners, lease expiry and retention all live there.

Shutdown (SIGTERM/SIGINT or :meth:`Broker.stop`): stop handing out messages
(waiting ``recv`` calls answer 204, streams end), stop the listeners (no new
connections; in-flight requests finish, sends wait for their commit), then
let the writer commit what is queued, remove the sockets and close the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.types import ASGIApp

from hyperhive import sqlite as hive_sqlite
from hyperhive.broker import store
from hyperhive.broker.agent_api import agent_app
from hyperhive.broker.control_api import control_app
from hyperhive.broker.events import EventFeed
from hyperhive.broker.listeners import Listener
from hyperhive.broker.mailroom import Mailroom
from hyperhive.broker.settings import BrokerSettings
from hyperhive.broker.writer import Writer
from hyperhive.clock import Clock, SystemClock
from hyperhive.paths import Paths

log = logging.getLogger(__name__)


class Broker:
    def __init__(self, paths: Paths, settings: BrokerSettings, clock: Clock | None = None) -> None:
        self.paths = paths
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.listeners: dict[str, Listener] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.mailroom: Mailroom
        self.feed: EventFeed
        self.writer: Writer

    def _open_db(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        db = self.paths.broker_db
        wconn = hive_sqlite.connect(db, store.MIGRATIONS, check_same_thread=False)
        rconn = hive_sqlite.connect(db, store.MIGRATIONS)
        rconn.execute("PRAGMA query_only=ON")
        return wconn, rconn

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Broker]:
        """The lifespan: everything is open inside, closed (sockets removed) after."""
        self.paths.run.mkdir(parents=True, exist_ok=True)
        wconn, rconn = self._open_db()
        try:
            self.feed = EventFeed(rconn)
            self.writer = Writer(wconn, self.clock, self.feed.publish)
            self.mailroom = Mailroom(self.writer, rconn, self.clock, self.settings)
            self.mailroom.load()
            self.writer.start()
            try:
                async with asyncio.TaskGroup() as tg:
                    self._tg = tg
                    # Mailbox sockets first: the control socket answering is "ready".
                    for name in list(self.mailroom.boxes):
                        await self.open_socket(name)
                    await self._listen("", self.paths.broker_sock, self._control())
                    lease_task = tg.create_task(self.mailroom.run_lease_expiry())
                    retention_task = tg.create_task(self.mailroom.run_retention())
                    log.info(
                        "hive-broker ready on %s (%d mailboxes)",
                        self.paths.broker_sock,
                        len(self.mailroom.boxes),
                    )
                    self.ready.set()
                    try:
                        yield self
                    finally:
                        await self._shutdown()
                        lease_task.cancel()
                        retention_task.cancel()
            finally:
                await self.writer.stop()
        finally:
            for listener in self.listeners.values():
                listener.remove_socket()
            wconn.close()
            rconn.close()
            log.info("hive-broker stopped")

    async def _shutdown(self) -> None:
        self.mailroom.shut()
        self.feed.close()
        await asyncio.gather(*(lst.stop() for lst in list(self.listeners.values())))

    def _control(self) -> ASGIApp:
        return control_app(self.mailroom, self.feed, self.open_socket, self.close_socket)

    async def _listen(self, name: str, path: Path, app: ASGIApp) -> None:
        if self._tg is None:
            raise RuntimeError("broker is not running")
        listener = Listener(path, app, name or "control")
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        listener.started = started
        self._tg.create_task(listener.run(started), name=f"listener {listener.name}")
        self.listeners[name] = listener
        try:
            await started
        except Exception:
            self.listeners.pop(name, None)
            raise

    async def open_socket(self, name: str) -> None:
        """Serve a mailbox's socket (idempotent)."""
        if self.mailroom.closing:
            return
        if name in self.listeners:
            # Opening twice at once: the second caller waits for the first's socket.
            await asyncio.shield(self.listeners[name].started)
            return
        path = self.paths.mailbox_sock(name)
        await self._listen(name, path, agent_app(self.mailroom, name))
        log.info("mailbox %s open on %s", name, path)

    async def close_socket(self, name: str) -> None:
        listener = self.listeners.pop(name, None)
        if listener is not None:
            await listener.stop()
            log.info("mailbox %s closed", name)

    def stop(self) -> None:
        self._stop.set()

    async def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT or :meth:`stop`."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        try:
            async with self.running():
                # What start-up built (modules, apps, servers of the stored
                # mailboxes) lives as long as the process: keep it out of
                # every later collection.
                gc.collect()
                gc.freeze()
                await self._stop.wait()
                log.info("stopping: finishing in-flight requests and commits")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

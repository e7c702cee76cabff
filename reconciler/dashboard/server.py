"""The dashboard and the agent web-UI listeners as one long-running c0re task.

c0re's lifespan starts :meth:`DashboardServer.run` in its TaskGroup. It binds
the dashboard port first (a clash is a clear start-up error), then keeps one
proxy listener per agent that has a ``web_port``, re-reading the agents from
the admin ``status`` whenever the status bus says something changed (and
every few seconds, so nothing depends on a missed wake-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from hyperhive.errors import HiveError
from hyperhive.paths import Paths
from hyperhive.reconciler.dashboard.app import Admin, DashboardApp, DashboardSettings
from hyperhive.reconciler.dashboard.auth import OperatorAuth
from hyperhive.reconciler.dashboard.bus import StatusBus
from hyperhive.reconciler.dashboard.proxy import Listener, ProxyFleet
from hyperhive.reconciler.dashboard.relay import BrokerLink

log = logging.getLogger(__name__)
RESYNC_SECONDS = 5.0


class DashboardError(HiveError):
    code = "dashboard_error"


class DashboardServer:
    def __init__(
        self,
        paths: Paths,
        settings: DashboardSettings,
        admin: Admin,
        bus: StatusBus,
        *,
        broker: BrokerLink | None = None,
        proxies: bool = True,
    ) -> None:
        """Reads (or creates) the operator token; refuses a non-loopback bind without a password."""
        self.settings = settings
        self.admin = admin
        self.bus = bus
        self.auth = OperatorAuth.load(paths.operator_token, settings.password_file, settings.host)
        self.broker = broker or BrokerLink(paths.broker_sock)
        self.app = DashboardApp(admin, self.auth, bus, self.broker)
        self.fleet = ProxyFleet(settings.host, self.auth, self.broker, paths.web_sock)
        self.proxies = proxies
        self.port: int | None = None
        self.ready = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}/"

    async def run(self) -> None:
        """Serve until cancelled; then close every listener."""
        try:
            listener = Listener.start(
                self.app.asgi(), self.settings.host, self.settings.port, "dashboard"
            )
        except OSError as e:
            raise DashboardError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {e.strerror}"
            ) from e
        self.port = listener.port
        log.info("dashboard on %s", self.url)
        self.ready.set()
        try:
            seq = self.bus.seq
            while True:
                if self.proxies:
                    await self.sync_proxies()
                seq = await self.bus.wait(seq, RESYNC_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await self.fleet.close()
            await listener.stop()

    async def sync_proxies(self) -> None:
        try:
            agents: list[dict[str, Any]] = (await self.admin({"cmd": "status"})).get("agents", [])
        except HiveError as e:
            log.warning("dashboard: cannot read agents for the web-UI listeners: %s", e.message)
            return
        wanted = {
            str(a["name"]): int(a["web_port"])
            for a in agents
            if isinstance(a.get("web_port"), int) and a.get("name")
        }
        await self.fleet.sync(wanted)


async def wait_ready(server: DashboardServer, task: asyncio.Task[None]) -> None:
    """Until the dashboard listens, or its task failed (re-raising why)."""
    ready = asyncio.ensure_future(server.ready.wait())
    await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()

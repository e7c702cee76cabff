"""The operator plane as one c0re extension: approvals, c0re.sock, the dashboard.

``hive-c0re serve`` runs :func:`start` in its TaskGroup after the core is up
(``daemon.EXTENSIONS``). Start order matters for the approval gate's
exactly-once promise: the queue heals approvals left ``approved`` by a crash
(:meth:`ApprovalQueue.recover`) before hm1nd's socket or the dashboard can
take a new decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hyperhive.names import MANAGER_MAILBOX, SYSTEM
from hyperhive.reconciler.approvals import ApprovalQueue
from hyperhive.reconciler.dashboard.app import DashboardSettings
from hyperhive.reconciler.dashboard.auth import load_password
from hyperhive.reconciler.dashboard.bus import StatusBus
from hyperhive.reconciler.dashboard.commands import approval_commands
from hyperhive.reconciler.dashboard.relay import BrokerLink
from hyperhive.reconciler.dashboard.server import DashboardError, DashboardServer, wait_ready
from hyperhive.reconciler.manager_socket import ManagerVerbs, serve_manager_socket

if TYPE_CHECKING:
    from hyperhive.reconciler.daemon import Hive

log = logging.getLogger(__name__)


def check_config(config: Mapping[str, Mapping[str, Any]]) -> None:
    """Fail ``serve`` with one clear line, before anything starts, on a bad ``[dashboard]``."""
    section = dict(config.get("dashboard", {}))
    if section.pop("enable", True) is False:
        return
    settings = DashboardSettings.from_config(section)
    load_password(settings.password_file, settings.host)


async def start(hive: Hive, tg: asyncio.TaskGroup) -> None:
    paths = hive.options.paths
    bus = StatusBus()
    hive.store.listeners.append(lambda _name: bus.publish())
    link = BrokerLink(paths.broker_sock)

    async def tell_manager(body: str, key: str) -> None:
        await link.send(SYSTEM, MANAGER_MAILBOX, body, key)

    def reconcile(names: list[str]) -> None:
        for name in names:
            hive.reconciler.enqueue(name, force=True)

    queue = ApprovalQueue(
        hive.store.db,
        paths.applied,
        paths.proposed,
        notify=tell_manager,
        on_applied=reconcile,
        on_change=bus.publish,
        on_event=hive.store.log,
    )
    for name, handler in approval_commands(queue).items():
        hive.admin.commands[name] = _admin_handler(handler)
    healed = await queue.recover()
    if healed:
        log.info("healed %d approval(s) left approved by a crash", len(healed))

    async def kill(name: str) -> None:
        await hive.admin.handle({"cmd": "kill", "name": name})
        bus.publish()

    verbs = ManagerVerbs(queue, kill, on_request=bus.publish)
    manager_server = await serve_manager_socket(paths.c0re_sock, verbs)
    tg.create_task(_hold(manager_server, paths.c0re_sock), name="c0re.sock")

    section: dict[str, Any] = dict(hive.options.config.get("dashboard", {}))
    if section.pop("enable", True) is False:
        log.info("dashboard disabled by [dashboard] enable = false")
        return
    settings = DashboardSettings.from_config(section)
    server = DashboardServer(paths, settings, hive.admin.handle, bus, broker=link)

    async def run_dashboard() -> None:
        """A busy port must not take the reconciler down with it: say so and go on."""
        try:
            await server.run()
        except DashboardError as e:
            log.error("dashboard not started: %s", e.message)  # noqa: TRY400 - no traceback
            hive.store.log("", "dashboard_failed", e.message)

    task = tg.create_task(run_dashboard(), name="dashboard")
    await wait_ready(server, task)
    if server.port is None:
        return
    url_file = paths.run / "dashboard.url"
    url_file.write_text(server.url + "\n", encoding="utf-8")
    log.info("dashboard on %s (open it with ?token= from %s)", server.url, paths.operator_token)


def _admin_handler(handler: Any) -> Any:
    """Adapt a ``req → answer`` handler to the admin registry's ``(admin, req)`` shape."""

    async def call(_admin: object, req: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await handler(req)
        return answer

    return call


async def _hold(server: asyncio.Server, path: Any) -> None:
    """Own the socket's server for the TaskGroup's life; close and unlink it on the way out."""
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

"""``hive-ag3nt serve``: one process holding the web UI, the MCP socket and the turn loop.

Everything lives in one TaskGroup. SIGTERM stops the web server, cancels the
loop (a running turn is stopped and its message nacked) and closes the rest
in reverse order. Without credentials only the UI runs; the loop waits on
``logged_in``, which a successful ``/login`` or credentials appearing set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from hyperhive.harness.agent_config import AgentConfig
from hyperhive.harness.broker_client import BrokerClient
from hyperhive.harness.claude_runner import ClaudeSettings
from hyperhive.harness.events import EventLog
from hyperhive.harness.login import LoginFlow, has_credentials
from hyperhive.harness.mcp_socket import serve_mcp
from hyperhive.harness.mcp_tools import HiveTools, build_server
from hyperhive.harness.status import StatusFile
from hyperhive.harness.turn_loop import TurnLoop
from hyperhive.harness.web import WebUI

log = logging.getLogger(__name__)
CREDENTIAL_POLL = 2.0
STOP_MARGIN = 2.0


@dataclass(frozen=True)
class ServeOptions:
    claude: ClaudeSettings = field(default_factory=ClaudeSettings)
    login_command: tuple[str, ...] = ()
    web_listen: tuple[str, int] | None = None
    renew_every: float = 60.0
    direct_mcp: bool = False


class _WebServer(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _unix_listener(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    path.chmod(0o660)
    sock.listen(128)
    return sock


def _tcp_listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


async def _watch_login(logged_in: asyncio.Event, cfg: AgentConfig, status: StatusFile) -> None:
    """Flip ``logged_in`` when credentials appear (login page or placed by hand)."""
    while not logged_in.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CREDENTIAL_POLL):
                await logged_in.wait()
        if has_credentials(cfg):
            logged_in.set()
    status.status.logged_in = True
    status.write()
    log.info("logged in; the turn loop starts")


async def serve(cfg: AgentConfig, options: ServeOptions) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    events = EventLog(cfg.events_db)
    status = StatusFile(cfg.status_file)
    logged_in = asyncio.Event()
    if has_credentials(cfg):
        logged_in.set()
    status.status.logged_in = logged_in.is_set()
    status.status.busy = False
    status.write()
    broker = BrokerClient(cfg.broker_sock)
    login = LoginFlow(cfg, list(options.login_command), logged_in)
    ui = WebUI(cfg, events, status, login)
    mcp_listener = await serve_mcp(build_server(HiveTools(broker, cfg.c0re_sock)), cfg.mcp_sock)
    listeners = [_unix_listener(cfg.web_sock)]
    if options.web_listen is not None:
        listeners.append(_tcp_listener(*options.web_listen))
    web = _WebServer(
        uvicorn.Config(
            ui.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    loop = TurnLoop(
        cfg,
        broker,
        events,
        status,
        logged_in,
        settings=options.claude,
        renew_every=options.renew_every,
        direct_mcp=options.direct_mcp,
    )
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        running.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            web_task = tg.create_task(web.serve(sockets=listeners))
            loop_task = tg.create_task(loop.run())
            watch_task = tg.create_task(_watch_login(logged_in, cfg, status))
            await stop.wait()
            log.info("stopping")
            loop.stop()  # a running turn is stopped and nacked before the rest closes
            watch_task.cancel()
            try:
                async with asyncio.timeout(options.claude.grace + STOP_MARGIN):
                    await asyncio.shield(loop_task)
            except TimeoutError:
                loop_task.cancel()
            ui.shutdown.set()
            web.should_exit = True
            await web_task
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.remove_signal_handler(sig)
        mcp_listener.close()
        await login.aclose()
        await broker.aclose()
        status.status.busy = False
        status.write()
        events.close()
        for sock in listeners:
            sock.close()
        for path in (cfg.web_sock, cfg.mcp_sock):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

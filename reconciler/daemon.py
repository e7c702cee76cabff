"""``hive-c0re serve``: the daemon's lifespan, one TaskGroup owning everything.

Start order: the repos (created with the default hm1nd on first start), the
status store, the runtime (``hyperhive.reconciler.runtimes.<module>.make``),
the broker client, the loop, the admin socket, then any extensions (the
dashboard, the manager's ``c0re.sock``) registered in :data:`EXTENSIONS`.
SIGTERM/SIGINT cancel the TaskGroup; agents are left running, because a
service restart must not kill them (DESIGN §10), and are adopted next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperhive import jsonlines
from hyperhive.config import ConfigError, load_config, take
from hyperhive.paths import Paths
from hyperhive.reconciler import gitrepo
from hyperhive.reconciler.admin import Admin
from hyperhive.reconciler.broker_client import BrokerClient
from hyperhive.reconciler.dashboard import extension as operator_plane
from hyperhive.reconciler.loop import LoopSettings, Reconciler
from hyperhive.reconciler.rev import hyperhive_rev
from hyperhive.reconciler.runtimes.base import Runtime, RuntimeOptions
from hyperhive.reconciler.status import StatusStore

log = logging.getLogger(__name__)

RUNTIME_MODULES = {"process": "process", "nspawn": "nspawn", "nixos-container": "nixos_container"}
#: Environment passed through to every agent (credentials for the model API).
PASSED_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
PASSED_ENV_PREFIX = "CLAUDE_CODE_"


@dataclass(frozen=True)
class ServeOptions:
    paths: Paths
    runtime: str = "process"
    settings: LoopSettings = field(default_factory=LoopSettings)
    unsafe_no_sandbox: bool = False
    agent_command: Sequence[str] | None = None
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class Hive:
    """Everything a running c0re holds; extensions receive it."""

    options: ServeOptions
    store: StatusStore
    runtime: Runtime
    broker: BrokerClient
    reconciler: Reconciler
    admin: Admin
    stop: asyncio.Event


#: Started in the TaskGroup after the core (dashboard, manager socket): ``(hive, tg)``.
Extension = Callable[[Hive, asyncio.TaskGroup], Awaitable[None]]
EXTENSIONS: list[Extension] = [operator_plane.start]  # approvals, c0re.sock, dashboard


def options_from(
    paths: Paths,
    config_file: Path | None,
    *,
    runtime: str | None = None,
    resync: float | None = None,
    no_auto_update: bool = False,
    unsafe_no_sandbox: bool = False,
) -> ServeOptions:
    """Merge the TOML config's ``[c0re]`` section with command-line flags (flags win)."""
    config = load_config(config_file)
    c0re = config["c0re"]
    runtime = runtime or take(c0re, "runtime", str, "process")
    if runtime not in RUNTIME_MODULES:
        raise ConfigError(f"unknown runtime {runtime!r} (one of {', '.join(RUNTIME_MODULES)})")
    resync_s = resync if resync is not None else take(c0re, "resync_seconds", float, 60.0)
    if not 0.1 <= resync_s <= 86400:
        raise ConfigError("resync must be between 0.1 and 86400 seconds")
    concurrency = take(c0re, "concurrency", int, 8)
    if not 1 <= concurrency <= 256:
        raise ConfigError("concurrency must be between 1 and 256")
    command = take(c0re, "agent_command", list, None)
    if command is not None and not all(isinstance(a, str) and a for a in command):
        raise ConfigError("agent_command must be a list of non-empty strings")
    settings = LoopSettings(
        resync_seconds=resync_s,
        auto_update=take(c0re, "auto_update", bool, True) and not no_auto_update,
        concurrency=concurrency,
        manager=take(c0re, "manager", bool, True),
    )
    operator_plane.check_config(config)
    return ServeOptions(
        paths=paths,
        runtime=runtime,
        settings=settings,
        unsafe_no_sandbox=unsafe_no_sandbox or take(c0re, "unsafe_no_sandbox", bool, False),
        agent_command=command,
        config=config,
    )


def agent_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k in PASSED_ENV or k.startswith(PASSED_ENV_PREFIX)}


async def make_runtime(options: ServeOptions) -> Runtime:
    module = importlib.import_module(
        f"hyperhive.reconciler.runtimes.{RUNTIME_MODULES[options.runtime]}"
    )
    runtime_options = RuntimeOptions(
        agent_env=agent_env(os.environ),
        agent_command=options.agent_command,
        unsafe_no_sandbox=options.unsafe_no_sandbox,
        package_source=Path(__file__).resolve().parent.parent,
    )
    made = module.make(options.paths, runtime_options)
    if inspect.isawaitable(made):
        made = await made
    runtime: Runtime = made
    return runtime


async def serve(options: ServeOptions) -> None:
    """Run until SIGTERM/SIGINT or admin ``shutdown``."""
    paths = options.paths
    paths.run.mkdir(parents=True, exist_ok=True, mode=0o755)
    paths.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    rev = hyperhive_rev()
    await asyncio.to_thread(
        gitrepo.ensure_repos, paths.applied, paths.proposed, manager=options.settings.manager
    )
    store = StatusStore(paths.c0re_db)
    broker = BrokerClient(paths.broker_sock)
    runtime = await make_runtime(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server: asyncio.Server | None = None
    try:
        reconciler = Reconciler(
            paths=paths,
            runtime=runtime,
            store=store,
            hyperhive_rev=rev,
            settings=options.settings,
            broker=broker,
        )
        admin = Admin(paths, store, reconciler, runtime, broker, rev, request_exit=stop.set)
        hive = Hive(options, store, runtime, broker, reconciler, admin, stop)
        store.log("", "started", f"hive-c0re {rev} on the {runtime.name} runtime")
        server = await jsonlines.serve(paths.host_sock, admin.handle)
        log.info("hive-c0re %s serving %s (runtime %s)", rev, paths.host_sock, runtime.name)
        async with asyncio.TaskGroup() as tg:
            work = tg.create_task(reconciler.run(tg), name="reconciler")
            for ext in EXTENSIONS:
                await ext(hive, tg)
            await stop.wait()
            work.cancel()
            tg.create_task(_leave(), name="leave")
    except* _Stop:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            paths.host_sock.unlink()
        await runtime.close()
        await broker.aclose()
        store.close()
        log.info("hive-c0re stopped; agents left running")


class _Stop(Exception):
    """Leaves the TaskGroup, cancelling every task it owns."""


async def _leave() -> None:
    raise _Stop

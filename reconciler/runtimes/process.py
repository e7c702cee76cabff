"""The ``process`` runtime: each agent a local process group, confined by bwrap.

The local default (``hive-c0re up``). An agent is ``bwrap … -- hive-ag3nt
serve`` started in its own session; the bwrap process is the group leader
c0re records in ``STATE/agents/<n>/pid`` (pid + start time), adopts after a
restart, and watches with a pidfd so that an exit is a runtime event at
once. Agents outlive c0re on purpose (no ``--die-with-parent``).

Phases: no record → not reported; a record and no pidfile → ``stopped``
(created, or stopped on purpose); a pidfile whose process lives →
``running``; a pidfile whose process is gone → ``failed`` (it crashed or
exited on its own, maybe while c0re was down), which the loop answers with
a Start under backoff. STOP removes the pidfile, so ``failed`` never means
"stopped by us".

:class:`ProcessRuntime` is also the base of the ``nspawn`` runtime, which
only changes how the leader is launched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hyperhive.names import MANAGER_AGENT, InvalidName
from hyperhive.paths import Paths

from . import agentfiles, sandbox
from .agentfiles import Record
from .base import (
    Action,
    ActionKind,
    Desired,
    Observed,
    PermanentError,
    Role,
    RuntimeOptions,
    TemporaryError,
)
from .pidfile import (
    ExitWatch,
    ProcessId,
    find_leader,
    identify,
    is_alive,
    is_sandbox_leader,
    read_pidfile,
    stop_process_tree,
    write_pidfile,
)

#: Runtimes that track agents with STATE/agents/<n>/pid (this module and nspawn).
PIDFILE_RUNTIMES = frozenset({"process", "nspawn"})
RESOURCES_REASON = "the {} runtime has no cgroup of its own to enforce spec.resources"


class ProcessRuntime:
    """Agents as bwrap-sandboxed process groups (see the module docstring)."""

    name = "process"

    def __init__(
        self,
        paths: Paths,
        options: RuntimeOptions,
        *,
        bwrap: str | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.paths = paths
        self.options = options
        self.bwrap = bwrap
        self.stop_timeout = stop_timeout
        self._watches: dict[str, ExitWatch] = {}
        self._popen: dict[str, subprocess.Popen[bytes]] = {}
        self._exit_codes: dict[str, int | None] = {}
        self._stopping: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._events: asyncio.Queue[str | None] = asyncio.Queue()
        self._closed = False

    # --- the Runtime protocol ---------------------------------------------------
    async def observe(self) -> dict[str, Observed]:
        out: dict[str, Observed] = {}
        for name, record in agentfiles.recorded_agents(self.paths, self.name).items():
            out[name] = self._observe_one(name, record)
        return out

    async def apply(self, action: Action) -> None:
        lock = self._locks.setdefault(action.name, asyncio.Lock())
        async with lock:
            try:
                await self._apply(action)
            except OSError as e:
                raise TemporaryError(f"{action}: {e.strerror or e}") from e
            except InvalidName as e:
                raise PermanentError(f"{action}: {e.message}") from e

    async def events(self) -> AsyncIterator[str]:
        while True:
            name = await self._events.get()
            if name is None:
                return
            yield name

    async def close(self) -> None:
        """Stop watching; the agents keep running and the next c0re adopts them."""
        self._closed = True
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        for popen in self._popen.values():
            # Handed over to the next c0re through the pidfile: Popen must neither
            # warn that it "is still running" nor reap it behind that c0re's back.
            popen.returncode = popen.returncode if popen.returncode is not None else 0
        self._popen.clear()
        self._events.put_nowait(None)

    # --- what a subclass changes ----------------------------------------------
    @property
    def sandboxed(self) -> bool:
        return self.bwrap is not None and os.access(self.bwrap, os.X_OK)

    def sandbox_kind(self) -> str:
        return "bwrap" if self.sandboxed else "none"

    def check_can_start(self, name: str) -> None:
        """Refuse to run an agent unconfined unless the operator asked for exactly that."""
        if not self.sandboxed and not self.options.unsafe_no_sandbox:
            where = self.bwrap or "bwrap"
            raise PermanentError(
                f"cannot start {name}: {where} is not installed or not executable, and agents "
                "never run unsandboxed by default (install bubblewrap, or run hive-c0re "
                "with --unsafe-no-sandbox)"
            )

    def launch_argv(self, name: str, role: Role) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment and host cwd of the leader process."""
        command = sandbox.harness_command(role, self.options)
        env = sandbox.agent_env(name, self.options)
        if not self.sandboxed:
            return command, self._unsafe_env(name, env), self._unsafe_cwd(name)
        links, system_binds = sandbox.system_links()
        binds = [*system_binds, *sandbox.host_binds()]
        sandbox.check_not_exposed(self.paths, binds)
        binds += sandbox.agent_binds(self.paths, name)
        argv = sandbox.bwrap_argv(
            str(self.bwrap),
            name=name,
            binds=binds,
            links=links,
            chdir=sandbox.workdir(name),
            command=command,
        )
        return argv, env, Path("/")

    def details(self) -> dict[str, Any]:
        return {
            "Sandbox": self.sandbox_kind(),
            "ResourcesEnforced": False,
            "ResourcesReason": RESOURCES_REASON.format(self.name),
        }

    # --- actions ----------------------------------------------------------------
    async def _apply(self, action: Action) -> None:
        name = action.name
        if action.kind is ActionKind.CREATE:
            await self._take_over(name)
            self._create(name, _desired(action))
        elif action.kind is ActionKind.UPDATE:
            desired = _desired(action)
            running = self._running(name) is not None
            if running:
                await self._stop(name)
            self._create(name, desired)
            if running:
                await self._start(name, desired)
        elif action.kind is ActionKind.START:
            await self._start(name, action.desired)
        elif action.kind is ActionKind.STOP:
            await self._stop(name)
        elif action.kind is ActionKind.DESTROY:
            await self._stop(name)
            self.forget(name)
            agentfiles.remove_record(self.paths, name)
        elif action.kind is ActionKind.REBUILD:
            desired = _desired(action)
            running = self._running(name) is not None
            await self._stop(name)
            self.forget(name)
            self._create(name, desired)
            if running:
                await self._start(name, desired)

    async def _take_over(self, name: str) -> None:
        """Stop an agent a sibling runtime left running (c0re switched runtimes).

        Create overwrites the record; without this the old runtime's process
        would live on, unobserved, next to the new one. process and nspawn
        share the pidfile, so either can stop the other's agent.
        """
        record = agentfiles.read_record(self.paths, name)
        if record is None or record.runtime == self.name or record.runtime not in PIDFILE_RUNTIMES:
            return
        await self._stop(name)

    def _create(self, name: str, desired: Desired) -> None:
        agentfiles.prepare_dirs(self.paths, name)
        agentfiles.write_agent_json(self.paths, desired)
        self.prepare_root(name)
        agentfiles.write_record(self.paths, name, agentfiles.record_for(desired, self.name))

    def prepare_root(self, name: str) -> None:
        """Anything a runtime keeps per agent besides the shared files (nspawn: its root)."""

    def forget(self, name: str) -> None:
        """Drop what ``prepare_root`` made (DESTROY, REBUILD); state is always kept."""

    async def _start(self, name: str, desired: Desired | None) -> None:
        if self._running(name) is not None:
            return
        record = agentfiles.read_record(self.paths, name)
        if desired is not None and (record is None or record.config_hash != desired.config_hash):
            self._create(name, desired)
            record = agentfiles.read_record(self.paths, name)
        if record is None:
            raise PermanentError(f"cannot start {name}: it was never created")
        self.check_can_start(name)
        agentfiles.prepare_dirs(self.paths, name)
        self.prepare_root(name)
        if desired is not None:
            agentfiles.write_agent_json(self.paths, desired)
        orphan = self._find_orphan(name)
        if orphan is not None:
            write_pidfile(self.paths.agent_pidfile(name), orphan)
            self._watch(name, orphan)
            return
        self._spawn(name, record.role)

    def _find_orphan(self, name: str) -> ProcessId | None:
        """This agent's leader, started by a c0re that died before writing the pidfile."""
        marker = self.launch_marker(name)
        program = self.launcher()
        return None if marker is None or program is None else find_leader(program, marker)

    def launcher(self) -> str | None:
        """argv[0] of a sandboxed leader (None: unsandboxed, not recognisable)."""
        return self.bwrap if self.sandboxed else None

    def launch_marker(self, name: str) -> str | None:
        """An argument only this agent's leader has: bwrap's ``--bind <state dir> /state``."""
        return str(self.paths.agent_state_dir(name))

    def _spawn(self, name: str, role: Role) -> None:
        """Start the leader in its own session, record it, watch it (fork+exec: fast)."""
        argv, env, cwd = self.launch_argv(name, role)
        log = agentfiles.open_log(self.paths, name)
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as e:
            raise TemporaryError(f"cannot start {name}: {argv[0]}: {e.strerror or e}") from e
        finally:
            os.close(log)
        proc = identify(popen.pid) or ProcessId(popen.pid, -1)
        write_pidfile(self.paths.agent_pidfile(name), proc)
        self._popen[name] = popen
        self._exit_codes.pop(name, None)
        self._watch(name, proc)

    async def _stop(self, name: str) -> None:
        pidfile = self.paths.agent_pidfile(name)
        proc = self._running(name)
        if proc is not None:
            watch = self._watch(name, proc)
            self._stopping.add(name)
            try:
                await stop_process_tree(
                    proc,
                    watch.exited,
                    timeout=self.stop_timeout,
                    sandboxed=is_sandbox_leader(proc.pid),
                )
            finally:
                self._stopping.discard(name)
            if not watch.exited.is_set():
                raise TemporaryError(f"{name} (pid {proc.pid}) survived SIGKILL")
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
        self._exit_codes.pop(name, None)

    # --- observation ------------------------------------------------------------
    def _observe_one(self, name: str, record: Record) -> Observed:
        proc = read_pidfile(self.paths.agent_pidfile(name))
        phase: Any
        message = ""
        if proc is None:
            phase = "stopped"
        elif is_alive(proc):
            if not self._closed:
                self._watch(name, proc)
            phase = "running"
        else:
            phase = "failed"
            code = self._exit_codes.get(name)
            status = f"status {code}" if code is not None else "while c0re was not watching"
            message = f"the agent exited ({status}){agentfiles.log_tail(self.paths, name)}"
            proc = None
        return Observed(
            name=name,
            phase=phase,
            config_hash=record.config_hash,
            hyperhive_rev=record.hyperhive_rev,
            pid=proc.pid if proc is not None else None,
            message=message,
            details=self.details(),
        )

    def _running(self, name: str) -> ProcessId | None:
        proc = read_pidfile(self.paths.agent_pidfile(name))
        return proc if proc is not None and is_alive(proc) else None

    def _watch(self, name: str, proc: ProcessId) -> ExitWatch:
        """Watch a started or adopted agent (once per process)."""
        current = self._watches.get(name)
        if current is not None and current.proc == proc:
            return current
        if current is not None:
            current.close()

        def on_exit(code: int | None) -> None:
            popen = self._popen.pop(name, None)
            if popen is not None and popen.pid == proc.pid:
                # ExitWatch reaped it already; tell Popen, which would wait() again.
                popen.returncode = code if code is not None else -1
            self._exit_codes[name] = code
            if self._watches.get(name) is watch:
                del self._watches[name]
            if name not in self._stopping and not self._closed:
                self._events.put_nowait(name)

        watch = ExitWatch(proc, on_exit)
        self._watches[name] = watch
        return watch

    def _unsafe_env(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """Without a sandbox the contract's paths do not exist: point at the host dirs."""
        env.update(
            {
                "HIVE_SOCKET_DIR": str(self.paths.agent_socket_dir(name)),
                "HIVE_STATE_DIR": str(self.paths.agent_state_dir(name)),
                "CLAUDE_CONFIG_DIR": str(self.paths.agent_claude_dir(name)),
                "HOME": str(self.paths.agent_state_dir(name)),
            }
        )
        return env

    def _unsafe_cwd(self, name: str) -> Path:
        if name == MANAGER_AGENT:
            return self.paths.proposed
        return self.paths.agent_state_dir(name) / "work"


def _desired(action: Action) -> Desired:
    if action.desired is None:
        raise PermanentError(f"{action}: the action carries no desired agent")
    return action.desired


def make(paths: Paths, options: RuntimeOptions) -> ProcessRuntime:
    """The process runtime, with bwrap from PATH (None when missing: see check_can_start)."""
    return ProcessRuntime(paths, options, bwrap=shutil.which("bwrap"))

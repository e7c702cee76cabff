"""The ``nixos-container`` runtime (production): each agent the container ``h-<name>``.

Every agent is an imperative nixos-container built from its per-agent flake
(:mod:`.flake`). The tool is always run as an argv list with
``STATE/flakes/<name>`` as its working directory (it builds into ``./.tmp``):

- CREATE: write the flake, ``create h-<n> --flake <dir>#container``, then
  rewrite ``/etc/nixos-containers/h-<n>.conf``: ``PRIVATE_NETWORK=0`` with
  the veth addresses cleared (the container shares the host's network, so
  web sockets and the model API on 127.0.0.1 are reachable) and
  ``EXTRA_NSPAWN_FLAGS`` with the ``--bind=`` flags of DESIGN §6. The
  container unit expands that value unquoted, so every bound path is checked
  to be plain (no spaces, quotes or glob characters) first.
- UPDATE / REBUILD: rewrite the flake, ``update`` (the tool reloads a running
  container = switch-to-configuration; the harness unit restarts on a new
  config hash). A bind change needs stop + start; so does a REBUILD, which
  replaces the hyperhive the agent runs.
- START / STOP / DESTROY: ``start``, ``stop``, ``destroy`` (the agent's state
  and credentials stay: they are binds, not the container's root).
- resources: a drop-in for ``container@h-<n>.service`` (MemoryMax,
  CPUQuota) in the runtime unit dir, then ``systemctl daemon-reload``.

Observation is ``list`` + ``status`` + the record of what was built
(:mod:`.agentfiles`, written only after a successful create/update, so a
failed build never looks up to date).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hyperhive.names import MANAGER_AGENT, is_agent_name, validate_agent_name
from hyperhive.paths import Paths

from . import agentfiles, flake
from .base import (
    Action,
    ActionKind,
    Desired,
    Observed,
    PermanentError,
    Phase,
    Role,
    RuntimeFailure,
    RuntimeOptions,
    TemporaryError,
)

log = logging.getLogger(__name__)

RUNTIME = "nixos-container"
PREFIX = "h-"
DROPIN_NAME = "hyperhive.conf"
ENV_FILE = ".hive-env"
#: Conf keys c0re owns after create; the rest (FLAKE=, AUTO_START=) stay the tool's.
NETWORK_CLEARED = ("HOST_ADDRESS", "LOCAL_ADDRESS", "HOST_ADDRESS6", "LOCAL_ADDRESS6")
ENV_KEY_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
MEMORY_RE = re.compile(r"[1-9][0-9]{0,5}[KMGT]?")
#: nix errors that say "try again", not "fix the agent".
TRANSIENT_RE = re.compile(
    r"unable to download|Could not resolve|Connection|timed out|Temporary failure|"
    r"No space left|cannot connect to socket|database is locked|resource temporarily",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ToolResult:
    code: int
    stdout: str
    stderr: str


class NixosContainerRuntime:
    """Agents as imperative nixos-containers built from per-agent flakes."""

    name = RUNTIME

    def __init__(
        self,
        paths: Paths,
        options: RuntimeOptions,
        *,
        tool: str = "nixos-container",
        conf_dir: Path = Path("/etc/nixos-containers"),
        dropin_dir: Path = Path("/run/systemd/system"),
        systemctl: Sequence[str] = ("systemctl",),
        system: str | None = None,
        build_timeout: float = 3600.0,
        tool_timeout: float = 180.0,
        poll_interval: float = 5.0,
    ) -> None:
        self.paths = paths
        self.options = options
        self.tool = tool
        self.conf_dir = conf_dir
        self.dropin_dir = dropin_dir
        self.systemctl = list(systemctl)
        self.system = system or flake.nix_system()
        self.build_timeout = build_timeout
        self.tool_timeout = tool_timeout
        self.poll_interval = poll_interval
        self._closed = asyncio.Event()
        #: The phases of the last observe(), what events() compares against.
        self._phases: dict[str, Phase] = {}

    # --- the seam ----------------------------------------------------------------
    async def observe(self) -> dict[str, Observed]:
        listed = await self._tool(["list"], timeout=self.tool_timeout)
        if listed.code != 0:
            raise self._failure("list", listed)
        names = [
            line.strip().removeprefix(PREFIX)
            for line in listed.stdout.splitlines()
            if line.strip().startswith(PREFIX) and is_agent_name(line.strip()[len(PREFIX) :])
        ]  # other containers on the host are not ours
        # Each status is a systemctl round trip: ask for all of them at once.
        statuses = await asyncio.gather(
            *(self._tool(["status", container_of(n)], timeout=self.tool_timeout) for n in names)
        )
        out: dict[str, Observed] = {}
        for name, status in zip(names, statuses, strict=True):
            if status.code != 0 and "gone" in status.stdout:
                continue  # destroyed between list and status
            record = agentfiles.read_record(self.paths, name)
            ours = record is not None and record.runtime == RUNTIME
            out[name] = Observed(
                name=name,
                phase="running" if status.stdout.strip() == "up" else "stopped",
                config_hash=record.config_hash if ours and record else None,
                hyperhive_rev=record.hyperhive_rev if ours and record else None,
                message="" if ours else "container exists without a build record",
                details={
                    "container": container_of(name),
                    "flake": str(self.paths.flake_dir(name)),
                    "ResourcesEnforced": True,
                },
            )
        self._phases = {n: o.phase for n, o in out.items()}
        return out

    async def apply(self, action: Action) -> None:
        name = validate_agent_name(action.name)
        kind = action.kind
        if kind is ActionKind.STOP:
            await self._call(["stop", container_of(name)], name)
        elif kind is ActionKind.DESTROY:
            await self._destroy(name)
        else:
            desired = action.desired
            if desired is None:
                raise PermanentError(f"{action}: no desired state given")
            if kind is ActionKind.CREATE:
                await self._create(desired)
            elif kind is ActionKind.START:
                await self._start(desired)
            else:  # UPDATE, REBUILD
                await self._update(desired, restart=kind is ActionKind.REBUILD)

    async def events(self) -> AsyncIterator[str]:
        """Containers do not tell c0re when they exit: poll their phases.

        A change is judged against the last observation of anyone (the loop's
        passes observe too), so a change a pass has already seen is not
        reported twice.
        """
        while not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self.poll_interval)
                return
            before = dict(self._phases)
            try:
                now = {n: o.phase for n, o in (await self.observe()).items()}
            except RuntimeFailure as e:
                log.warning("observing containers failed: %s", e.message)
                continue
            for name in sorted(set(now) | set(before)):
                if name in before and now.get(name) != before[name]:
                    yield name

    async def close(self) -> None:
        self._closed.set()

    # --- actions -----------------------------------------------------------------
    async def _create(self, desired: Desired) -> None:
        name = desired.name
        agentfiles.prepare_dirs(self.paths, name)
        flake_dir = self._write_flake(desired)
        ref = flake.flake_ref(flake_dir)
        result = await self._tool(
            ["create", container_of(name), "--flake", ref],
            cwd=flake_dir,
            timeout=self.build_timeout,
        )
        if result.code != 0:
            if "already exists" not in result.stderr:
                raise self._failure(f"create {container_of(name)}", result)
            # A create that failed in its build (or c0re crashed after it) left the conf.
            await self._call(["update", container_of(name), "--flake", ref], name, build=True)
        self._configure(desired)
        await self._write_resources(desired)
        agentfiles.write_record(self.paths, name, agentfiles.record_for(desired, RUNTIME))

    async def _update(self, desired: Desired, *, restart: bool) -> None:
        name = desired.name
        agentfiles.prepare_dirs(self.paths, name)
        flake_dir = self._write_flake(desired)
        # The harness restarts on switch when the spec changed: give it the new one first.
        agentfiles.write_agent_json(self.paths, desired)
        running = await self._running(name)
        await self._call(
            ["update", container_of(name), "--flake", flake.flake_ref(flake_dir)], name, build=True
        )
        binds_changed = self._configure(desired)
        await self._write_resources(desired)
        if running and (restart or binds_changed):
            await self._call(["stop", container_of(name)], name)
            await self._call(["start", container_of(name)], name)
        agentfiles.write_record(self.paths, name, agentfiles.record_for(desired, RUNTIME))

    async def _start(self, desired: Desired) -> None:
        name = desired.name
        agentfiles.prepare_dirs(self.paths, name)
        agentfiles.write_agent_json(self.paths, desired)
        # Idempotent, and heals a conf left by a crash between create and rewrite.
        self._configure(desired)
        await self._write_resources(desired)
        await self._call(["start", container_of(name)], name)

    async def _destroy(self, name: str) -> None:
        await self._call(["destroy", container_of(name)], name)
        dropin = self._dropin(name)
        if dropin.exists():
            dropin.unlink()
            with contextlib.suppress(OSError):
                dropin.parent.rmdir()
            await self._daemon_reload()
        shutil.rmtree(self.paths.flake_dir(name), ignore_errors=True)
        agentfiles.remove_record(self.paths, name)

    # --- files -------------------------------------------------------------------
    def _write_flake(self, desired: Desired) -> Path:
        source = self.flake_source()
        flake_dir = self.paths.flake_dir(desired.name)
        flake.write_flake(flake_dir, desired, source, self.system)
        return flake_dir

    def flake_source(self) -> Path:
        """The hyperhive flake the agents' flakes take as input.

        ``HYPERHIVE_PACKAGE_SOURCE`` (set by the NixOS module to the flake's
        own source) wins over ``options.package_source``, which for an
        installed package points into site-packages rather than at a flake.
        """
        source = _env_path("HYPERHIVE_PACKAGE_SOURCE") or self.options.package_source
        if source is None or not (source / "flake.nix").is_file():
            raise PermanentError(
                f"no hyperhive flake source for the per-agent flakes (got {source}): run "
                "hive-c0re from the NixOS module, or set HYPERHIVE_PACKAGE_SOURCE to a "
                "hyperhive checkout"
            )
        return source

    def binds(self, name: str, role: Role) -> list[tuple[str, str]]:
        """(host path, container path) of every bind, each checked to be plain."""
        pairs = [
            (self.paths.agent_socket_dir(name), "/run/hive"),
            (self.paths.agent_state_dir(name), "/state"),
            (self.paths.agent_claude_dir(name), "/root/.claude"),
        ]
        if role == "manager" and name == MANAGER_AGENT:
            pairs.append((self.paths.proposed, "/agents"))
        return [(flake.plain_path(host, "bind source"), inside) for host, inside in pairs]

    def _configure(self, desired: Desired) -> bool:
        """Rewrite the container's conf and env file; True when the binds changed."""
        name = desired.name
        conf = self.conf_dir / f"{container_of(name)}.conf"
        try:
            lines = conf.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError as e:
            raise TemporaryError(f"{conf} is missing: the container is not created") from e
        flags = " ".join(
            f"--bind={host}:{inside}" for host, inside in self.binds(name, desired.role)
        )
        wanted = {"PRIVATE_NETWORK": "0", **dict.fromkeys(NETWORK_CLEARED, "")}
        wanted["EXTRA_NSPAWN_FLAGS"] = f'"{flags}"'
        old: dict[str, str] = {}
        kept: list[str] = []
        for line in lines:
            key, eq, value = line.partition("=")
            if eq and key in wanted:
                old[key] = value
            else:
                kept.append(line)
        text = "".join(f"{line}\n" for line in [*kept, *(f"{k}={v}" for k, v in wanted.items())])
        _write_text(conf, text, 0o644)
        self._write_env(name)
        return old.get("EXTRA_NSPAWN_FLAGS") != wanted["EXTRA_NSPAWN_FLAGS"]

    def _write_env(self, name: str) -> None:
        """Credentials for the harness unit's EnvironmentFile=, never in the store."""
        lines = []
        for key, value in sorted(self.options.agent_env.items()):
            if ENV_KEY_RE.fullmatch(key) is None or any(c in value for c in "\n\r\x00"):
                raise PermanentError(f"agent environment {key!r}: not passable to a container")
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key}="{escaped}"\n')
        path = self.paths.agent_state_dir(name) / ENV_FILE
        _write_text(path, "".join(lines), 0o600)

    def _dropin(self, name: str) -> Path:
        return self.dropin_dir / f"container@{container_of(name)}.service.d" / DROPIN_NAME

    async def _write_resources(self, desired: Desired) -> None:
        resources = desired.spec.get("resources") or {}
        props = []
        memory = resources.get("memory")
        if memory is not None:
            if not isinstance(memory, str) or MEMORY_RE.fullmatch(memory) is None:
                raise PermanentError(
                    f"agent {desired.name}: resources.memory {memory!r} is invalid"
                )
            props.append(f"MemoryMax={memory}")
        cpus = resources.get("cpus")
        if cpus is not None:
            if isinstance(cpus, bool) or not isinstance(cpus, int | float) or not 0 < cpus <= 256:
                raise PermanentError(f"agent {desired.name}: resources.cpus {cpus!r} is invalid")
            props.append(f"CPUQuota={round(cpus * 100)}%")
        dropin = self._dropin(desired.name)
        if not props:
            if dropin.exists():
                dropin.unlink()
                await self._daemon_reload()
            return
        text = "# Written by hive-c0re from spec.resources.\n[Service]\n"
        text += "".join(f"{p}\n" for p in props)
        with contextlib.suppress(OSError):
            if dropin.read_text(encoding="utf-8") == text:
                return
        dropin.parent.mkdir(parents=True, exist_ok=True)
        _write_text(dropin, text, 0o644)
        await self._daemon_reload()

    # --- running the tools -------------------------------------------------------
    async def _running(self, name: str) -> bool:
        result = await self._tool(["status", container_of(name)], timeout=self.tool_timeout)
        return result.code == 0 and result.stdout.strip() == "up"

    async def _call(self, args: list[str], name: str, *, build: bool = False) -> None:
        timeout = self.build_timeout if build else self.tool_timeout
        cwd = self.paths.flake_dir(name) if self.paths.flake_dir(name).is_dir() else None
        result = await self._tool(args, cwd=cwd, timeout=timeout)
        if result.code != 0:
            raise self._failure(" ".join(args[:2]), result)

    async def _daemon_reload(self) -> None:
        result = await run_tool([*self.systemctl, "daemon-reload"], None, self.tool_timeout)
        if result.code != 0:
            raise TemporaryError(f"systemctl daemon-reload failed: {_tail(result.stderr)}")

    async def _tool(
        self, args: list[str], *, cwd: Path | None = None, timeout: float
    ) -> ToolResult:
        return await run_tool([self.tool, *args], cwd, timeout)

    def _failure(self, what: str, result: ToolResult) -> RuntimeFailure:
        return classify(what, result)


def container_of(name: str) -> str:
    return PREFIX + validate_agent_name(name)


def classify(what: str, result: ToolResult) -> RuntimeFailure:
    """Exit status and message → retry with backoff, or wait for a new commit.

    Perl's ``die`` exits with $! (or $? >> 8, or 255), so the status says
    little; the message says which. A build that failed evaluating or
    building the agent's configuration (its agent.nix, a package name)
    waits for a new commit; one that failed fetching or locking is retried.
    """
    message = f"nixos-container {what} failed (exit {result.code}): {_tail(result.stderr)}"
    stderr = result.stderr
    if result.code == 124:
        return TemporaryError(message)
    if "invalid container name" in stderr or "is too long" in stderr or "declarative" in stderr:
        return PermanentError(message)
    if "Unknown option" in stderr or "requires an argument" in stderr:
        return PermanentError(message)
    if "failed to build" in stderr and not TRANSIENT_RE.search(stderr):
        return PermanentError(message)
    return TemporaryError(message)


async def run_tool(argv: list[str], cwd: Path | None, timeout: float) -> ToolResult:
    """Run one tool call in its own process group; on timeout SIGTERM, then SIGKILL."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise PermanentError(
            f"{argv[0]} is not installed: the nixos-container runtime needs a NixOS host "
            "with boot.enableContainers"
        ) from e
    except OSError as e:
        raise TemporaryError(f"cannot run {argv[0]}: {e.strerror}") from e

    async def read(stream: asyncio.StreamReader | None, sink: list[str]) -> None:
        if stream is None:
            return
        async for raw in stream:
            line = raw.decode(errors="replace")
            sink.append(line)
            log.debug("%s: %s", argv[1] if len(argv) > 1 else argv[0], line.rstrip())

    out: list[str] = []
    err: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(read(proc.stdout, out), read(proc.stderr, err))
            code = await proc.wait()
    except TimeoutError:
        await _stop_group(proc)
        return ToolResult(124, "".join(out), "".join(err) + f"\ntimed out after {timeout:g}s")
    except asyncio.CancelledError:
        await _stop_group(proc)
        raise
    return ToolResult(code, "".join(out), "".join(err))


async def _stop_group(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
        if proc.returncode is not None:
            return


def _tail(text: str, limit: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _env_path(key: str) -> Path | None:
    value = os.environ.get(key)
    return Path(value) if value else None


def _write_text(path: Path, text: str, mode: int) -> None:
    """Atomic replace (a symlink planted at the name is replaced, never followed)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def make(paths: Paths, options: RuntimeOptions) -> NixosContainerRuntime:
    """The runtime as hive-c0re runs it; the NixOS module sets the HYPERHIVE_* variables."""
    env = os.environ
    return NixosContainerRuntime(
        paths,
        options,
        tool=env.get("HYPERHIVE_NIXOS_CONTAINER")
        or shutil.which("nixos-container")
        or "nixos-container",
        conf_dir=Path(env.get("HYPERHIVE_CONTAINER_CONF_DIR") or "/etc/nixos-containers"),
        dropin_dir=Path(env.get("HYPERHIVE_SYSTEMD_DROPIN_DIR") or "/run/systemd/system"),
        systemctl=(env.get("HYPERHIVE_SYSTEMCTL") or "systemctl",),
    )

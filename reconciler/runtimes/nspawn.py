"""The ``nspawn`` runtime: each agent a ``systemd-nspawn`` container (non-NixOS Linux, root).

Same contract as the process runtime — same binds, environment, pidfile,
adoption, exit watch and stop — with systemd-nspawn as the confining
leader instead of bwrap, so everything but the launch is inherited from
:class:`~.process.ProcessRuntime`.

Hosts without systemd as PID 1 or without a system bus (containers, CI)
are fine: ``--register=no --keep-unit`` keeps nspawn away from machined
and from creating a scope unit. ``--as-pid2`` puts nspawn's stub init at
PID 1 so the harness is a normal process that gets SIGTERM. Each agent has
its own tiny root directory (nspawn locks the directory it boots), holding
only mount points and the ``bin lib lib64 sbin → usr/…`` symlinks of a
merged-/usr host; ``/usr``, ``/etc``, the Python prefix and the venv come
read-only from the host exactly as in the bwrap sandbox. On exit nspawn
may warn about ``/run/systemd/nspawn/propagate``: harmless here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from hyperhive.paths import Paths

from . import sandbox
from .base import PermanentError, Role, RuntimeOptions
from .process import ProcessRuntime

ROOT_DIR = "rootfs"
#: Mount points nspawn needs in the root, plus the targets of our binds.
MOUNT_POINTS = ("usr", "etc", "proc", "sys", "dev", "run", "tmp", "var/tmp", "root", "state")


class NspawnRuntime(ProcessRuntime):
    """Agents as systemd-nspawn containers named ``h-<name>``."""

    name = "nspawn"

    def __init__(
        self,
        paths: Paths,
        options: RuntimeOptions,
        *,
        nspawn: str | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(paths, options, bwrap=None, stop_timeout=stop_timeout)
        self.nspawn = nspawn

    @property
    def sandboxed(self) -> bool:
        return self.nspawn is not None and os.access(self.nspawn, os.X_OK)

    def sandbox_kind(self) -> str:
        return "systemd-nspawn"

    def check_can_start(self, name: str) -> None:
        if not self.sandboxed:
            raise PermanentError(
                f"cannot start {name}: {self.nspawn or 'systemd-nspawn'} is not installed "
                "(install systemd-container, or use the process runtime)"
            )
        if os.geteuid() != 0:
            raise PermanentError(f"cannot start {name}: the nspawn runtime must run as root")

    def launcher(self) -> str | None:
        return self.nspawn if self.sandboxed else None

    def launch_marker(self, name: str) -> str | None:
        return _bind_flag(self.paths.agent_state_dir(name), sandbox.STATE_DIR, writable=True)

    def root_dir(self, name: str) -> Path:
        return self.paths.agent_root(name) / ROOT_DIR

    def prepare_root(self, name: str) -> None:
        """The per-agent root: mount points and merged-/usr symlinks, nothing else."""
        root = self.root_dir(name)
        for sub in MOUNT_POINTS:
            (root / sub).mkdir(mode=0o755, parents=True, exist_ok=True)
        # nspawn checks the root "looks like an OS" before mounting /etc over it.
        (root / "etc" / "os-release").touch(exist_ok=True)
        links, _ = sandbox.system_links()
        for link in links:
            path = root / link.path.relative_to("/")
            if not path.is_symlink():
                path.symlink_to(link.target)

    def forget(self, name: str) -> None:
        """Remove the root (only mount points and symlinks; never followed)."""
        root = self.root_dir(name)
        if root.is_dir() and not root.is_symlink():
            shutil.rmtree(root)

    def launch_argv(self, name: str, role: Role) -> tuple[list[str], dict[str, str], Path]:
        command = sandbox.harness_command(role, self.options)
        env = sandbox.agent_env(name, self.options)
        _, system_binds = sandbox.system_links()
        host = [*system_binds, *sandbox.host_binds()]
        sandbox.check_not_exposed(self.paths, host)
        binds = [*host, *sandbox.agent_binds(self.paths, name)]
        argv = [
            str(self.nspawn),
            "--quiet",
            "--register=no",
            "--keep-unit",
            "--console=pipe",
            "--as-pid2",
            f"--machine=h-{name}",
            f"--directory={self.root_dir(name)}",
            # Root in the container keeps no capability (the harness needs none),
            # so it cannot remount the read-only binds.
            "--drop-capability=all",
            "--no-new-privileges=yes",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
        ]
        for bind in binds:
            argv.append(_bind_flag(bind.source, bind.target, writable=bind.writable))
        # --setenv=NAME takes the value from nspawn's own environment: values never
        # appear in argv, which every local user can read in /proc.
        argv += [f"--setenv={key}" for key in env]
        argv += [f"--chdir={sandbox.workdir(name)}", "--", *command]
        return argv, env, Path("/")


def _bind_flag(source: Path, target: PurePosixPath, *, writable: bool) -> str:
    """``--bind[-ro]=SRC:DST``; nspawn splits on ``:``, so such paths are refused."""
    for path in (str(source), str(target)):
        if ":" in path or "," in path:
            raise PermanentError(f"path {path!r} cannot be bound by systemd-nspawn (':' or ',')")
    flag = "--bind" if writable else "--bind-ro"
    return f"{flag}={source}:{target}"


def make(paths: Paths, options: RuntimeOptions) -> NspawnRuntime:
    return NspawnRuntime(paths, options, nspawn=shutil.which("systemd-nspawn"))

"""What an agent sees of the host: the bind list, its environment, its command.

Every runtime that confines an agent (bwrap for ``process``, systemd-nspawn
for ``nspawn``) shows it the same small world (DESIGN §10 "Sandbox"):

- read-only: ``/usr`` (with ``/bin``, ``/lib``, ``/lib64``, ``/sbin`` as the
  host has them: symlinks into ``/usr`` on a merged-/usr system), ``/etc``,
  ``/nix`` if present, the Python prefix (``sys.base_prefix``), the venv the
  harness runs from (``sys.prefix``), and — for an editable install only —
  the source folders the harness imports (see :func:`harness_source_dirs`);
- read-write: the agent's socket dir at ``/run/hive``, its state dir at
  ``/state``, its credentials at ``/root/.claude`` (hm1nd also
  ``STATE/proposed`` at ``/agents``).

Nothing else: never the checkout as a whole, RUN, STATE or ``operator.token``.
This module only builds data and argv lists; it starts nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hyperhive.names import MANAGER_AGENT
from hyperhive.paths import Paths

from .base import PermanentError, Role, RuntimeOptions

#: Inside-the-sandbox paths of the contract (DESIGN §8, §10).
SOCKET_DIR = PurePosixPath("/run/hive")
STATE_DIR = PurePosixPath("/state")
CLAUDE_DIR = PurePosixPath("/root/.claude")
PROPOSED_DIR = PurePosixPath("/agents")
HOME_DIR = PurePosixPath("/root")
WORK_DIR = STATE_DIR / "work"

#: Top-level dirs that are symlinks into /usr on a merged-/usr host (Debian 12, NixOS-free).
SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: The packages the harness imports; an editable install maps each to a source folder.
HARNESS_PACKAGES = ("hyperhive", "hyperhive.harness", "hyperhive.desired_state")
#: procfs entries no agent may write (see _proc_covers).
PROC_COVERS = ("sys", "sysrq-trigger")
#: /etc entries that may be symlinks into /run (systemd-resolved) and must still resolve.
ETC_LINKS = ("resolv.conf", "hosts", "localtime")
PLAIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Bind:
    """One host path shown at ``target`` inside the sandbox."""

    source: Path
    target: PurePosixPath
    writable: bool


@dataclass(frozen=True)
class Link:
    """A symlink ``path -> target`` the sandbox root gets (``/bin -> usr/bin``)."""

    path: PurePosixPath
    target: str


def venv_bin() -> Path:
    """Where the console scripts sit: next to the interpreter c0re runs on."""
    return Path(sys.executable).parent


def harness_command(role: Role, options: RuntimeOptions) -> list[str]:
    """``hive-ag3nt serve`` (hm1nd: ``hive-m1nd serve``), unless options replace it."""
    if options.agent_command is not None:
        command = [str(part) for part in options.agent_command]
        if not command:
            raise PermanentError("the configured agent command is empty")
        return command
    script = "hive-m1nd" if role == "manager" else "hive-ag3nt"
    return [str(venv_bin() / script), "serve"]


def agent_env(name: str, options: RuntimeOptions) -> dict[str, str]:
    """The whole environment of an agent: the contract, credentials, a sane PATH.

    Built from nothing, so the operator's environment (and any secret in it)
    never leaks; the contract keys win over anything in ``agent_env``.
    """
    env = {key: value for key, value in options.agent_env.items() if "=" not in key}
    env.update(
        {
            "PATH": f"{venv_bin()}:{PLAIN_PATH}",
            # A UTF-8 locale that exists everywhere (else Python coerces it and node guesses).
            "LANG": "C.UTF-8",
            "HIVE_AGENT": name,
            "HIVE_SOCKET_DIR": str(SOCKET_DIR),
            "HIVE_STATE_DIR": str(STATE_DIR),
            "CLAUDE_CONFIG_DIR": str(CLAUDE_DIR),
            "HOME": str(HOME_DIR),
        }
    )
    return env


def workdir(name: str) -> PurePosixPath:
    """claude's stable cwd (``--continue`` resumes the conversation of the cwd)."""
    return PROPOSED_DIR if name == MANAGER_AGENT else WORK_DIR


def system_links(root: Path = Path("/")) -> tuple[list[Link], list[Bind]]:
    """``/bin`` & co. as the host has them: symlinks kept as symlinks, real dirs bound."""
    links: list[Link] = []
    binds: list[Bind] = []
    for entry in SYSTEM_DIRS:
        host = root / entry
        if host.is_symlink():
            links.append(Link(PurePosixPath("/") / entry, os.readlink(host)))
        elif host.is_dir():
            binds.append(Bind(host, PurePosixPath("/") / entry, writable=False))
    return links, binds


def harness_source_dirs() -> list[Path]:
    """Source folders an editable install imports the harness from.

    setuptools' editable finder maps ``hyperhive`` and ``hyperhive.harness``
    to folders of the checkout (``hyperhive/``, ``harness/``), outside the
    venv. Inside the sandbox those exact folders must exist at the same
    paths or ``import hyperhive.harness`` fails; they are bound read-only and
    nothing else of the checkout is (not ``reconciler/``, ``.git``, ``.hive``).
    ``desired_state`` (the schema, no code) comes along for hm1nd, which
    validates specs before proposing them. A regular install lives inside
    the venv and needs none of this.
    """
    inside = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    out: list[Path] = []
    for package in HARNESS_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(location).resolve()
            if folder.is_dir() and not any(folder.is_relative_to(p) for p in inside):
                out.append(folder)
    return sorted(set(out))


def etc_link_binds(shown: Sequence[Path], root: Path = Path("/")) -> list[Bind]:
    """Files of /etc that are symlinks out of every shown tree, bound at their target.

    Ubuntu's ``/etc/resolv.conf`` points into ``/run/systemd/resolve/``; the
    sandbox has no host ``/run``, so without this an agent has no DNS.
    """
    out: list[Bind] = []
    for entry in ETC_LINKS:
        link = root / "etc" / entry
        if not link.is_symlink():
            continue
        target = link.resolve()
        if target.is_file() and not any(target.is_relative_to(tree) for tree in shown):
            out.append(Bind(target, PurePosixPath(target), writable=False))
    return out


def host_binds() -> list[Bind]:
    """The read-only host trees every agent needs to run Python, node and claude."""
    binds = [Bind(Path("/usr"), PurePosixPath("/usr"), writable=False)]
    binds.append(Bind(Path("/etc"), PurePosixPath("/etc"), writable=False))
    if Path("/nix").is_dir():
        binds.append(Bind(Path("/nix"), PurePosixPath("/nix"), writable=False))
    seen = {Path("/usr"), Path("/etc"), Path("/nix")}
    for tree in (Path(sys.base_prefix), Path(sys.prefix), *harness_source_dirs()):
        resolved = tree.resolve()
        if resolved in seen or any(resolved.is_relative_to(s) for s in seen):
            continue
        seen.add(resolved)
        binds.append(Bind(resolved, PurePosixPath(resolved), writable=False))
    binds += etc_link_binds([b.source.resolve() for b in binds])
    return binds


def agent_binds(paths: Paths, name: str) -> list[Bind]:
    """The agent's own read-write dirs, at the contract's paths."""
    binds = [
        Bind(paths.agent_socket_dir(name), SOCKET_DIR, writable=True),
        Bind(paths.agent_state_dir(name), STATE_DIR, writable=True),
        Bind(paths.agent_claude_dir(name), CLAUDE_DIR, writable=True),
    ]
    if name == MANAGER_AGENT:
        binds.append(Bind(paths.proposed, PROPOSED_DIR, writable=True))
    return binds


def check_not_exposed(paths: Paths, binds: Sequence[Bind]) -> None:
    """Refuse a layout where RUN or STATE lies inside a tree the sandbox shows.

    ``.hive`` inside a venv, or STATE under ``/etc``, would hand every agent
    the operator token and every other agent's credentials.
    """
    for root in (paths.run.resolve(), paths.state.resolve()):
        for bind in binds:
            if not bind.writable and root.is_relative_to(bind.source.resolve()):
                raise PermanentError(
                    f"{root} lies inside {bind.source}, which every agent's sandbox shows "
                    "read-only; move the hive's run/state dirs elsewhere"
                )


def _proc_covers() -> list[str]:
    """Read-only ``/proc/sys`` and ``/proc/sysrq-trigger`` over the sandbox's procfs.

    bwrap covers them itself only where its own check finds them writable;
    left writable, uid 0 — even without capabilities — may write most
    sysctls by their mode bits (``kernel.core_pattern`` runs a program as
    host root). The host's are bound: the same network namespace, and
    read-only is all an agent needs.
    """
    out: list[str] = []
    for entry in PROC_COVERS:
        if Path("/proc", entry).exists():
            out += ["--ro-bind", f"/proc/{entry}", f"/proc/{entry}"]
    return out


def bwrap_argv(
    bwrap: str,
    *,
    name: str,
    binds: Sequence[Bind],
    links: Sequence[Link],
    chdir: PurePosixPath,
    command: Sequence[str],
) -> list[str]:
    """The full bwrap command line. The environment is bwrap's own process env
    (bwrap passes it through), never ``--setenv``: argv is world-readable in
    ``/proc`` and the env carries the API key.

    Beyond §10's flags: ``--cap-drop ALL`` (bwrap run by root keeps every
    capability otherwise, enough to remount the read-only binds writable),
    private IPC and UTS (hostname ``h-<name>``). The network stays shared:
    agents reach the model API and their web UI proxy over loopback.
    ``--die-with-parent`` is deliberately absent: agents outlive c0re.
    """
    argv = [
        bwrap,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        f"h-{name}",
        "--cap-drop",
        "ALL",
        "--proc",
        "/proc",
        *_proc_covers(),
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",  # noqa: S108 - a private tmpfs inside the sandbox
    ]
    for link in links:
        argv += ["--symlink", link.target, str(link.path)]
    for bind in binds:
        argv += ["--bind" if bind.writable else "--ro-bind", str(bind.source), str(bind.target)]
    argv += ["--chdir", str(chdir), "--", *command]
    return argv

"""Agents as host processes that outlive c0re: pidfiles, adoption, exit watches, stop.

An agent is one process-group leader (``bwrap`` or ``systemd-nspawn``)
started in its own session. c0re records its pid together with its
``/proc`` start time, so a later c0re (after a crash or a service restart)
can tell "still the same process" from "the pid was reused" and adopt it
instead of starting a duplicate. An exit is noticed through a pidfd (works
for processes that are not our children, unlike ``waitpid``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .agentfiles import atomic_write_json

#: Upper bound on a pidfile we are willing to parse (it holds two integers).
PIDFILE_MAX = 4096
#: How often a stop looks for new processes in the agent's tree while it waits.
RESCAN = 0.05


@dataclass(frozen=True)
class ProcessId:
    """A pid plus the kernel's start time: together they name one process for good."""

    pid: int
    start_time: int


def start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``; None when gone or a zombie (dead, unreaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(proc: ProcessId) -> bool:
    return start_time(proc.pid) == proc.start_time


def identify(pid: int) -> ProcessId | None:
    started = start_time(pid)
    return None if started is None else ProcessId(pid, started)


def write_pidfile(path: Path, proc: ProcessId) -> None:
    atomic_write_json(path, {"pid": proc.pid, "start_time": proc.start_time}, mode=0o600)


def read_pidfile(path: Path) -> ProcessId | None:
    """The recorded process, or None for a missing or unreadable (stale) pidfile."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(PIDFILE_MAX))
        pid, started = data["pid"], data["start_time"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (isinstance(pid, int) and isinstance(started, int)) or pid <= 1:
        return None
    return ProcessId(pid, started)


def find_leader(program: str, marker: str) -> ProcessId | None:
    """A living session leader running ``program`` with ``marker`` among its arguments.

    Heals the one window the pidfile cannot cover: c0re killed between
    starting an agent and recording it. The marker is an argument only
    that agent's leader carries (the bind of its own state dir).
    """
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().decode(errors="replace").rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) < 4 or fields[3] != entry:  # not its session's leader
            continue
        if argv and argv[0] == program.encode() and marker.encode() in argv:
            proc = identify(int(entry))
            if proc is not None:
                return proc
    return None


#: Leaders that confine their payload in a pid namespace (see stop_process_tree).
SANDBOX_LEADERS = frozenset({b"bwrap", b"systemd-nspawn"})


def is_sandbox_leader(pid: int) -> bool:
    """Whether the leader is bwrap/systemd-nspawn (so its payload gets the SIGTERM).

    Read from the process, not from c0re's options: an adopted agent may have
    been started by another runtime or configuration.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0", 1)[0]
    except OSError:
        return False
    return os.path.basename(argv0) in SANDBOX_LEADERS


@dataclass(frozen=True)
class Member:
    proc: ProcessId
    #: PID 1 of a pid namespace (bwrap's reaper, nspawn's stub init): ignores
    #: SIGTERM from the host, and SIGKILL to it tears the whole namespace down.
    namespace_init: bool


def descendants(root: int) -> list[Member]:
    """Every living process below ``root``, by one scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[Member] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        proc = identify(pid)
        if proc is not None:
            out.append(Member(proc, _is_namespace_init(pid)))
    return out


def _is_namespace_init(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    return len(ids) > 1 and ids[-1] == "1"
    except OSError:
        pass
    return False


def _signal(proc: ProcessId, sig: int) -> None:
    if is_alive(proc):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, sig)


def reap(pid: int) -> int | None:
    """Collect our own child's exit status (a no-op for an adopted process)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None


class ExitWatch:
    """Calls ``on_exit`` once when a process exits, via a pidfd on the event loop."""

    def __init__(self, proc: ProcessId, on_exit: Callable[[int | None], None]) -> None:
        self.proc = proc
        self.exited = asyncio.Event()
        self.exit_code: int | None = None
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        try:
            self._fd: int | None = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            self._fd = None
        # The pid may have been reused between identify() and pidfd_open().
        if self._fd is None or not is_alive(proc):
            self._loop.call_soon(self._fire)
        else:
            self._loop.add_reader(self._fd, self._fire)

    def _fire(self) -> None:
        if self.exited.is_set():
            return
        self.close()
        self.exit_code = reap(self.proc.pid)
        self.exited.set()
        self._on_exit(self.exit_code)

    def close(self) -> None:
        """Stop watching (c0re shutting down); the process is left alone."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


async def stop_process_tree(
    leader: ProcessId, exited: asyncio.Event, *, timeout: float, sandboxed: bool
) -> None:
    """SIGTERM the agent, wait up to ``timeout``, then SIGKILL all that is left.

    In a sandbox the leader is ``bwrap``/``systemd-nspawn``, which die at once
    on SIGTERM (nspawn's stub init even SIGKILLs its payload): so the
    payload processes get the SIGTERM, not the leader and not the namespace
    init; when the payload exits the init and then the leader follow.
    SIGKILL to a namespace init kills every process in that namespace, so
    nothing started inside survives, not even a grandchild in another
    session; the namespace is torn down after the leader is gone, so the
    stop waits for every process it saw to be dead. Every process seen while waiting is
    remembered, because a dead leader's children are re-parented and could
    no longer be found below it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: dict[ProcessId, Member] = {}
    if not sandboxed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader.pid, signal.SIGTERM)
    while not exited.is_set() and loop.time() < deadline:
        # Re-scanned while waiting: a just-started sandbox may not have forked
        # its payload yet, and a payload signalled before that would be missed.
        for member in descendants(leader.pid):
            if member.proc not in seen:
                seen[member.proc] = member
                if sandboxed and not member.namespace_init:
                    _signal(member.proc, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited.wait(), min(RESCAN, max(0.0, deadline - loop.time())))
    if is_alive(leader):
        for member in descendants(leader.pid):
            seen.setdefault(member.proc, member)
        # The group exists while its leader lives, so its id cannot be reused yet.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader.pid, signal.SIGKILL)
    # Stragglers outside the group: namespace inits first (each takes its namespace along).
    for member in sorted(seen.values(), key=lambda m: not m.namespace_init):
        _signal(member.proc, signal.SIGKILL)
    if not exited.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited.wait(), timeout)
    while any(is_alive(m.proc) for m in seen.values()) and loop.time() < deadline + timeout:
        for member in seen.values():
            _signal(member.proc, signal.SIGKILL)
        await asyncio.sleep(RESCAN)  # no event tells a non-child's death here

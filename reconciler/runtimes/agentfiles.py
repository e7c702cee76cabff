"""The files every runtime keeps per agent: dirs, ``agent.json`` and the runtime record.

Shared by all runtimes (process, nspawn, nixos-container), so an agent looks
the same on disk whichever runs it (DESIGN §6, §10):

``RUN/agents/<n>/`` (hm1nd: ``RUN/manager/``)  socket dir, 0700 → ``/run/hive``
``STATE/agents/<n>/state/``                    → ``/state`` (``work/`` is claude's cwd)
``STATE/agents/<n>/claude/``                   → ``/root/.claude``
``STATE/agents/<n>/state/agent.json``          what the harness reads (written by c0re)
``STATE/agents/<n>/runtime.json``              the record: which runtime, config hash, rev
``STATE/agents/<n>/pid``                       pid + start time of the running agent

The record lies *outside* the bound state dir on purpose: everything under
``state/`` is writable by the agent, so c0re never trusts it, and an agent
cannot forge the config hash or rev c0re reconciles against.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperhive.names import MANAGER_AGENT, is_agent_name
from hyperhive.paths import Paths

from .base import Desired, Role, TemporaryError

RECORD_FILE = "runtime.json"
LOG_FILE = "harness.log"
#: A log past this size is rotated to ``harness.log.1`` when the agent (re)starts.
LOG_MAX = 4 * 1024 * 1024
#: How much of the log's tail a failed agent's message quotes.
LOG_TAIL = 300
AGENT_JSON = "agent.json"
#: A record is a few hundred bytes; anything bigger is not ours.
RECORD_MAX = 64 * 1024


@dataclass(frozen=True)
class Record:
    """What a runtime created an agent from: how ``observe()`` reports hash and rev."""

    runtime: str
    role: Role
    config_hash: str
    hyperhive_rev: str


def atomic_write_json(path: Path, data: Mapping[str, Any], *, mode: int = 0o644) -> None:
    """Write-then-rename in the same dir: readers see the old or the new file, never half.

    ``mkstemp`` opens a fresh name with O_EXCL, and ``os.replace`` swaps the
    directory entry, so a symlink planted by an agent at the final name is
    replaced, never followed.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # fchmod, not chmod(tmp): in the agent's dir the name could be swapped
            # for a symlink between the two calls, and chmod follows it.
            os.fchmod(f.fileno(), mode)
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def prepare_dirs(paths: Paths, name: str) -> None:
    """Create the agent's dirs (idempotent). Existing state and credentials are kept."""
    root = paths.agent_root(name)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in (paths.agent_state_dir(name), paths.agent_claude_dir(name)):
        sub.mkdir(mode=0o700, exist_ok=True)
    # Inside the agent-writable state dir: never chmod/chown here (it may be a symlink).
    (paths.agent_state_dir(name) / "work").mkdir(exist_ok=True)
    sockets = paths.agent_socket_dir(name)
    sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(sockets, 0o700)
    if name == MANAGER_AGENT:
        paths.proposed.mkdir(parents=True, exist_ok=True)


def write_agent_json(paths: Paths, desired: Desired) -> None:
    """The harness's view of its own desired state, written before every start."""
    atomic_write_json(
        paths.agent_state_dir(desired.name) / AGENT_JSON,
        {
            "name": desired.name,
            "role": desired.role,
            "spec": dict(desired.spec),
            "web_port": desired.web_port,
            "hyperhive_rev": desired.hyperhive_rev,
        },
    )


def write_record(paths: Paths, name: str, record: Record) -> None:
    atomic_write_json(
        paths.agent_root(name) / RECORD_FILE,
        {
            "runtime": record.runtime,
            "role": record.role,
            "config_hash": record.config_hash,
            "hyperhive_rev": record.hyperhive_rev,
        },
        mode=0o600,
    )


def read_record(paths: Paths, name: str) -> Record | None:
    """The record, or None when missing or unreadable (treated as never created)."""
    try:
        with open(paths.agent_root(name) / RECORD_FILE, "rb") as f:
            data = json.loads(f.read(RECORD_MAX))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    fields = (data.get(k) for k in ("runtime", "role", "config_hash", "hyperhive_rev"))
    runtime, role, config_hash, rev = fields
    if not all(isinstance(v, str) for v in (runtime, config_hash, rev)) or role not in (
        "agent",
        "manager",
    ):
        return None
    return Record(str(runtime), role, str(config_hash), str(rev))


def remove_record(paths: Paths, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (paths.agent_root(name) / RECORD_FILE).unlink()


def recorded_agents(paths: Paths, runtime: str) -> dict[str, Record]:
    """Every agent whose record says ``runtime`` created it, keyed by name."""
    out: dict[str, Record] = {}
    try:
        entries = sorted(os.listdir(paths.state / "agents"))
    except FileNotFoundError:
        return out
    for entry in entries:
        if not is_agent_name(entry):
            continue
        record = read_record(paths, entry)
        if record is not None and record.runtime == runtime:
            out[entry] = record
    return out


def record_for(desired: Desired, runtime: str) -> Record:
    return Record(runtime, desired.role, desired.config_hash, desired.hyperhive_rev)


def open_log(paths: Paths, name: str) -> int:
    """The agent's log in its state dir (``/state/harness.log``), rotated on start.

    O_NOFOLLOW: the state dir is the agent's, and c0re (root) must not be
    tricked into appending to a file a planted symlink points at.
    """
    log = paths.agent_state_dir(name) / LOG_FILE
    with contextlib.suppress(OSError):
        if log.lstat().st_size > LOG_MAX:
            os.replace(log, log.with_name(LOG_FILE + ".1"))
    # O_NONBLOCK so a FIFO planted there cannot hang c0re; only a regular file is used.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(log, flags, 0o600)
    except OSError as e:
        raise TemporaryError(f"cannot open {log}: {e.strerror or e}") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TemporaryError(f"cannot open {log}: not a regular file")
    os.set_blocking(fd, True)
    return fd


def log_tail(paths: Paths, name: str) -> str:
    """``; last log line: …`` for a failed agent's message (untrusted: printable, capped)."""
    log = paths.agent_state_dir(name) / LOG_FILE
    try:
        fd = os.open(log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return ""
        size = info.st_size
        f.seek(max(0, size - LOG_TAIL))
        tail = f.read(LOG_TAIL).decode(errors="replace")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return ""
    last = "".join(ch if ch.isprintable() else "?" for ch in lines[-1])
    return f"; last log line: {last}"

"""Suite-wide guards: real tools or a loud failure in CI, and no leaked processes.

pytest becomes a child subreaper, so any process a test starts (and any of its
grandchildren that get orphaned) is re-parented here; after each test its
children must be gone, reaped — a zombie would look alive to ``kill(pid, 0)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PR_SET_CHILD_SUBREAPER = 36
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
#: Debian's Chromium, headless, as root, on a machine with no outside network:
#: without the background-networking flags it keeps dialling hosts it cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def pytest_configure(config: pytest.Config) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def require_tool(name: str) -> str:
    """The tool's path; a missing tool skips locally and fails under ``CI=true``."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def _parents() -> dict[int, int]:
    """pid → ppid for every process, read from /proc."""
    out: dict[int, int] = {}
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
            out[int(entry)] = int(fields[1])
    return out


def _children() -> list[int]:
    me = os.getpid()
    return [pid for pid, ppid in _parents().items() if ppid == me]


def _descendants(roots: list[int]) -> list[int]:
    """``roots`` and everything below them: killing a sandbox's leader alone
    (bwrap, systemd-nspawn) would leave the processes inside it running."""
    parents = _parents()
    found = list(roots)
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - set(found)
        found.extend(frontier)
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.fixture(autouse=True)
def no_leaked_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    before = set(_children())
    yield
    deadline = time.monotonic() + 10
    leaked: list[int] = []
    while time.monotonic() < deadline:
        _reap()
        leaked = [p for p in _children() if p not in before]
        if not leaked:
            return
        time.sleep(0.05)  # polling /proc for exits; there is no event to await here
    for pid in _descendants(leaked):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap()
    pytest.fail(f"test leaked child processes: {leaked}")


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

"""A real hive for integration tests: hive-broker and hive-c0re as processes, real git.

Agents run on the real process runtime (bwrap) with a minimal idle program
instead of the harness: it writes the status.json of the contract and waits
for SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from hyperhive import jsonlines
from hyperhive.errors import HiveError
from hyperhive.paths import Paths
from tests import polling

VENV_BIN = Path(sys.executable).parent

IDLE = """
import json, os, signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
state = os.environ["HIVE_STATE_DIR"]
with open(os.path.join(state, ".status.tmp"), "w") as f:
    json.dump({"logged_in": True, "busy": False, "turns": 0, "last_turn_at": None,
               "cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0}, f)
os.replace(os.path.join(state, ".status.tmp"), os.path.join(state, "status.json"))
while True:
    signal.pause()
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=op", "-c", "user.email=op@x", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def git_commit_file(repo: Path, path: str, data: bytes | None, message: str) -> None:
    """What an operator does: edit the work tree, ``git add``/``rm``, ``git commit``."""
    target = repo / path
    if data is None:
        git(repo, "rm", "-q", path)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        git(repo, "add", path)
    git(repo, "commit", "-qm", message)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _argv(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def agent_processes(name: str, state_dir: Path) -> list[int]:
    """Pids of the idle program (not bwrap) running as agent ``name`` of this hive.

    Other hives on the machine (other test runs) have agents of the same name,
    so a process counts only when a sandbox leader above it binds this hive's
    ``state_dir`` for the agent.
    """
    marker = str(state_dir).encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = _argv(int(entry))
        if not argv or not Path(argv[0].decode(errors="replace")).name.startswith("python"):
            continue
        if not any(b"signal.pause()" in a for a in argv):
            continue
        pid, hops = int(entry), 0
        while pid > 1 and hops < 4:
            stat = _stat(pid)
            if stat is None:
                break
            pid, hops = int(stat[1]), hops + 1
            if marker in _argv(pid):
                out.append(int(entry))
                break
    return out


class LiveHive:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.paths = Paths.from_home(home)
        self.config = home / "c0re.toml"
        self.broker: subprocess.Popen[bytes] | None = None
        self.c0re: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.home / log, "ab") as out:
            return subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def start_broker(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.broker = broker = self._spawn(
            [
                str(VENV_BIN / "hive-broker"),
                "serve",
                "--run-dir",
                str(self.paths.run),
                "--state-dir",
                str(self.paths.state),
            ],
            "broker.log",
        )
        what = "the broker answers /healthz"
        client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.paths.broker_sock)),
            base_url="http://broker",
        )
        try:

            async def healthy() -> bool:
                self.still_running(broker, what)
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await self.until(healthy, what)
        finally:
            await client.aclose()

    async def start_c0re(self) -> None:
        self.config.write_text(
            "[c0re]\n"
            f"agent_command = [{sys.executable!r}, '-c', '''{IDLE}''']\n"
            "resync_seconds = 60.0\n"
            # The shared checkout's rev moves with every commit; a restarted c0re would
            # (rightly) rebuild every agent, which is not what these tests look at.
            "auto_update = false\n"
        )
        self.c0re = c0re = self._spawn(
            [
                str(VENV_BIN / "hive-c0re"),
                "serve",
                "--run-dir",
                str(self.paths.run),
                "--state-dir",
                str(self.paths.state),
                "--config",
                str(self.config),
            ],
            "c0re.log",
        )
        what = "hive-c0re answers on host.sock"

        async def answers() -> bool:
            self.still_running(c0re, what)
            try:
                return bool((await self.ask(cmd="status"))["ok"])
            except (HiveError, OSError, ValueError):
                return False

        await self.until(answers, what)

    async def ask(self, **req: Any) -> dict[str, Any]:
        return await jsonlines.request(self.paths.host_sock, req, timeout=30)

    async def agent(self, name: str) -> dict[str, Any] | None:
        resp = await self.ask(cmd="status")
        for a in resp["agents"]:
            if a["name"] == name:
                return dict(a)
        return None

    async def until(self, check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
        """Wait for ``check`` (sync or async); a timeout shows the hive's logs."""
        await polling.until(check, what, timeout=timeout, explain=self.logs)

    def still_running(self, proc: subprocess.Popen[bytes], what: str) -> None:
        """Inside a check: a child dying first fails the wait at once, not at its deadline."""
        if proc.poll() is not None:
            raise AssertionError(
                f"process exited ({proc.returncode}) before: {what}\n{self.logs()}"
            )

    async def phase_is(self, name: str, phase: str) -> bool:
        a = await self.agent(name)
        return a is not None and a["phase"] == phase

    def logs(self) -> str:
        out = []
        for log in ("c0re.log", "broker.log"):
            with contextlib.suppress(OSError):
                out.append(f"--- {log}\n" + (self.home / log).read_text()[-3000:])
        return "\n".join(out)

    def processes(self, name: str) -> list[int]:
        return agent_processes(name, self.paths.agent_state_dir(name))

    def kill9_c0re(self) -> None:
        assert self.c0re is not None
        os.killpg(self.c0re.pid, signal.SIGKILL)
        self.c0re.wait()
        self.c0re = None

    async def sigterm_c0re(self) -> int:
        """What a service manager does on restart; returns c0re's exit status."""
        assert self.c0re is not None
        os.killpg(self.c0re.pid, signal.SIGTERM)
        try:
            code = await asyncio.to_thread(self.c0re.wait, 20)
        except subprocess.TimeoutExpired:
            raise AssertionError("hive-c0re did not exit on SIGTERM\n" + self.logs()) from None
        self.c0re = None
        return code

    async def stop(self) -> None:
        """Admin shutdown with agents, then SIGTERM c0re and the broker; reap everything."""
        if self.c0re is not None and self.c0re.poll() is None:
            with contextlib.suppress(HiveError, OSError, ValueError):
                await self.ask(cmd="shutdown", agents=True)
        for proc in (self.c0re, self.broker):
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.c0re = self.broker = None

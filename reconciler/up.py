"""``hive-c0re up``: a whole local hive in one directory, with readable logs and a clean Ctrl-C.

RUN = DIR/run, STATE = DIR/state. ``up`` starts hive-broker and ``hive-c0re
serve`` as child processes (each in its own process group, its output
prefixed line by line), and with ``--demo`` the packaged scripted model
first, pointing every agent at it. It records the children's pids in
``RUN/up.json`` and stops leftovers of a crashed ``up`` before starting.
Ctrl-C asks c0re to stop every agent (admin ``shutdown {"agents": true}``),
then stops c0re and the broker, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from hyperhive import jsonlines
from hyperhive.errors import HiveError
from hyperhive.paths import DEFAULT_HOME, Paths
from hyperhive.reconciler import gitrepo
from hyperhive.reconciler.broker_client import BrokerClient

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
DEMO_AGENTS = ("alice", "bob")
DEMO_KICKOFF = "Please say hello to bob, then tell me when you are done."


class UpError(HiveError):
    code = "up_failed"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demo", action="store_true", help="run the packaged scripted model")
    p.add_argument("--runtime", choices=["process", "nspawn", "nixos-container"], default="process")
    p.add_argument("--dashboard-port", type=int, default=7000)
    p.add_argument("--unsafe-no-sandbox", action="store_true")


def run(ns: argparse.Namespace) -> int:
    home = Path(ns.home) if ns.home else DEFAULT_HOME
    if not 1 <= ns.dashboard_port <= 65535:
        print("hive-c0re up: --dashboard-port must be 1..65535", file=sys.stderr)
        return 2
    up = LocalHive(
        Paths.from_home(home), ns.demo, ns.runtime, ns.dashboard_port, ns.unsafe_no_sandbox
    )
    try:
        return asyncio.run(up.main())
    except UpError as e:
        print(f"hive-c0re up: {e.message}", file=sys.stderr)
        return 1


def tool(name: str) -> str:
    """A console script of this installation (next to the running python), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise UpError(f"{name} is not installed (run `make run`, which sets it up)")
    return found


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _zombie(pid: int) -> bool:
    """Exited but not yet reaped (by whoever inherited it): as good as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    pump: asyncio.Task[None] | None = None


class LocalHive:
    def __init__(
        self, paths: Paths, demo: bool, runtime: str, dashboard_port: int, unsafe_no_sandbox: bool
    ) -> None:
        self.paths = paths
        self.demo = demo
        self.runtime = runtime
        self.dashboard_port = dashboard_port
        self.unsafe_no_sandbox = unsafe_no_sandbox
        self.children: list[Child] = []
        self.record = paths.run / "up.json"

    def say(self, text: str) -> None:
        print(f"\x1b[1;32m[up]\x1b[0m {text}", flush=True)

    async def main(self) -> int:
        self.paths.run.mkdir(parents=True, exist_ok=True)
        self.paths.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.stop_leftovers()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        code = 0
        try:
            env = dict(os.environ)
            if self.demo:
                url = await self.start_demo_model(env)
                env["ANTHROPIC_BASE_URL"] = url
                env["ANTHROPIC_API_KEY"] = "demo-not-a-real-key"
            await self.start_broker(env)
            await self.start_c0re(env)
            token = self.write_token()
            if self.demo:
                await self.start_demo()
            self.say(f"dashboard: http://127.0.0.1:{self.dashboard_port}/?token={token}")
            self.say(f"hive home: {self.paths.run.parent}  (Ctrl-C stops everything)")
            died = asyncio.create_task(self.first_exit())
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({died, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if died in done:
                self.say(f"{died.result()} exited on its own; stopping the hive")
                code = 1
            for t in (died, waiter):
                t.cancel()
        except UpError as e:
            print(f"hive-c0re up: {e.message}", file=sys.stderr)
            code = 1
        finally:
            await self.shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return code

    # --- children --------------------------------------------------------------
    async def spawn(
        self, name: str, argv: list[str], env: Mapping[str, str], *, pump: bool = True
    ) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,  # its own process group: Ctrl-C reaches only us
        )
        child = Child(name, proc)
        self.children.append(child)
        if pump:
            child.pump = asyncio.create_task(self.relay(child))
        self.write_record()
        return child

    async def relay(self, child: Child) -> None:
        if child.proc.stdout is None:
            return
        while line := await child.proc.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            print(f"\x1b[36m[{child.name}]\x1b[0m {text}", flush=True)

    async def first_exit(self) -> str:
        waits = {asyncio.create_task(c.proc.wait()): c.name for c in self.children}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        return waits[next(iter(done))]

    def write_record(self) -> None:
        data = {
            c.name: {"pid": c.proc.pid, "start": _start_time(c.proc.pid)} for c in self.children
        }
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.record)

    async def stop_leftovers(self) -> None:
        """Stop the children a crashed ``up`` left behind (matched by pid and start time).

        c0re gets SIGTERM like the others, which leaves its agents running: the
        c0re started next adopts them.
        """
        try:
            data = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(data, dict):
            return
        alive: dict[int, str] = {}
        for name, info in data.items():
            if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
                continue
            pid = info["pid"]
            start = info.get("start")
            if pid <= 1 or start is None or _start_time(pid) != start:
                continue
            self.say(f"stopping leftover {name} (pid {pid})")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            alive[pid] = start
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT
        while alive and loop.time() < deadline:
            alive = {p: t for p, t in alive.items() if _start_time(p) == t and not _zombie(p)}
            await asyncio.sleep(0.05)  # not our children: /proc is all there is to watch
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.record.unlink(missing_ok=True)

    async def stop_child(self, child: Child) -> None:
        if child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(child.proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                await child.proc.wait()
        if child.pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(child.pump, 2.0)
            child.pump.cancel()

    async def shutdown(self) -> None:
        names = [c.name for c in self.children]
        if "c0re" in names and self.paths.host_sock.exists():
            self.say("stopping agents")
            with contextlib.suppress(HiveError, OSError, ValueError):
                await jsonlines.request(
                    self.paths.host_sock, {"cmd": "shutdown", "agents": True}, timeout=60
                )
        for name in ("c0re", "broker", "model"):
            for child in [c for c in self.children if c.name == name]:
                await self.stop_child(child)
        self.children.clear()
        self.record.unlink(missing_ok=True)
        self.say("stopped")

    # --- the parts -------------------------------------------------------------
    async def start_demo_model(self, env: Mapping[str, str]) -> str:
        child = await self.spawn(
            "model", [tool("hive-ag3nt"), "demo-model", "--port", "0"], env, pump=False
        )
        if child.proc.stdout is None:
            raise UpError("the demo model has no stdout")
        try:
            line = await asyncio.wait_for(child.proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError as e:
            raise UpError("the demo model did not print its URL in time") from e
        url = line.decode(errors="replace").strip()
        if not url.startswith("http://127.0.0.1:"):
            await child.proc.wait() if child.proc.returncode is not None else None
            raise UpError(f"`hive-ag3nt demo-model` did not start (first line: {url!r})")
        child.pump = asyncio.create_task(self.relay(child))
        self.say(f"demo model at {url}")
        return url

    async def start_broker(self, env: Mapping[str, str]) -> None:
        argv = [
            tool("hive-broker"),
            "serve",
            "--run-dir",
            str(self.paths.run),
            "--state-dir",
            str(self.paths.state),
        ]
        child = await self.spawn("broker", argv, env)
        client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.paths.broker_sock)),
            base_url="http://broker",
            timeout=2.0,
        )
        try:
            await self._until(child, "hive-broker", lambda: self._healthy(client))
        finally:
            await client.aclose()

    async def _healthy(self, client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get("/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    async def start_c0re(self, env: Mapping[str, str]) -> None:
        config = self.paths.run / "c0re.toml"
        config.write_text(f"[dashboard]\nport = {self.dashboard_port}\n")
        argv = [
            tool("hive-c0re"),
            "serve",
            "--run-dir",
            str(self.paths.run),
            "--state-dir",
            str(self.paths.state),
            "--runtime",
            self.runtime,
            "--config",
            str(config),
        ]
        if self.unsafe_no_sandbox:
            argv.append("--unsafe-no-sandbox")
        child = await self.spawn("c0re", argv, env)

        async def answers() -> bool:
            try:
                resp = await jsonlines.request(self.paths.host_sock, {"cmd": "status"}, timeout=2)
            except (HiveError, OSError, ValueError):
                return False
            return bool(resp.get("ok"))

        await self._until(child, "hive-c0re", answers)

    async def _until(self, child: Child, what: str, ready: object) -> None:
        """Poll ``ready`` until it is true; the child exiting first is an error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            if child.proc.returncode is not None:
                raise UpError(f"{what} exited with status {child.proc.returncode}; see its log")
            if await ready():  # type: ignore[operator]
                return
            await asyncio.sleep(0.05)  # polling a socket that has no readiness event
        raise UpError(f"{what} did not become ready within {START_TIMEOUT:.0f} s")

    def write_token(self) -> str:
        token = secrets.token_urlsafe(32)
        path = self.paths.operator_token
        tmp = path.with_name(".operator.token.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
        return token

    async def start_demo(self) -> None:
        """Commit alice and bob, then send alice the one message that starts the demo."""
        changes: dict[str, bytes | None] = {
            f"{n}/agent.yaml": demo_agent_yaml(n) for n in DEMO_AGENTS
        }
        await asyncio.to_thread(
            gitrepo.commit_files,
            self.paths.applied,
            changes,
            "Add the demo agents alice and bob",
            {"Operator-Action": "demo"},
        )
        self.say("committed alice and bob; waiting for alice's mailbox")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not self.paths.mailbox_sock("alice").exists():
            if loop.time() > deadline:
                raise UpError("alice's mailbox did not appear; see `hive-c0re status`")
            await asyncio.sleep(0.05)  # the broker makes the socket; no event reaches us
        broker = BrokerClient(self.paths.broker_sock)
        try:
            mid = await broker.send_as_operator("alice", DEMO_KICKOFF)
        finally:
            await broker.aclose()
        self.say(f"sent alice the demo kickoff (message {mid})")


def demo_agent_yaml(name: str) -> bytes:
    return (
        "apiVersion: hyperhive.dev/v1\nkind: Agent\n"
        f"metadata:\n  name: {name}\n"
        "spec:\n  role: agent\n  state: running\n  model: haiku\n"
        f"  systemPrompt: You are {name}, a demo agent. Answer your messages briefly.\n"
    ).encode()

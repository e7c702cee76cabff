"""Real processes for harness tests: the demo model, a broker, harnesses.

Each is started as the production command with the environment contract of
DESIGN §10 pointed at tmp dirs, and stopped SIGTERM → wait → SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.polling import wait_until

BIN = Path(sys.executable).parent


def stop(proc: subprocess.Popen[bytes], *, group: bool = False, grace: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoModel:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def start_demo_model(log: Path) -> DemoModel:
    proc = subprocess.Popen(
        [str(BIN / "hive-ag3nt"), "demo-model", "--port", "0", "--log", str(log)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    assert url.startswith("http://127.0.0.1:"), url
    return DemoModel(proc, url, log)


def uds_client(path: Path, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(path)), base_url="http://hive", timeout=timeout
    )


@dataclass
class Broker:
    proc: subprocess.Popen[bytes]
    run: Path
    state: Path

    def control(self) -> httpx.Client:
        return uds_client(self.run / "broker.sock")

    def open_mailbox(self, name: str) -> Path:
        with self.control() as c:
            r = c.put(f"/mailboxes/{name}")
            assert r.status_code in (200, 201), r.text
        return self.socket_dir(name)

    def socket_dir(self, name: str) -> Path:
        return self.run / ("manager" if name in ("manager", "hm1nd") else f"agents/{name}")

    def send(self, to: str, body: str, sender: str = "operator") -> int:
        with self.control() as c:
            r = c.post("/send", json={"from": sender, "to": to, "body": body})
            assert r.status_code in (200, 201), r.text
            return int(r.json()["id"])

    def messages(self, agent: str | None = None) -> list[dict[str, Any]]:
        with self.control() as c:
            params: dict[str, str | int] = {"limit": 1000}
            if agent:
                params["agent"] = agent
            r = c.get("/messages", params=params)
            assert r.status_code == 200, r.text
            return list(r.json()["messages"])


def start_broker(home: Path, lease_seconds: float = 600) -> Broker:
    run, state = home / "run", home / "state"
    proc = subprocess.Popen(
        [
            str(BIN / "hive-broker"),
            "serve",
            "--run-dir",
            str(run),
            "--state-dir",
            str(state),
            "--lease-seconds",
            str(lease_seconds),
            "--log-level",
            "warning",
        ],
    )
    broker = Broker(proc, run, state)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError("hive-broker exited")
        try:
            with broker.control() as c:
                return c.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(healthy, "broker healthz", timeout=15)
    return broker


@dataclass
class Harness:
    name: str
    state: Path
    sockets: Path
    claude_dir: Path
    env: dict[str, str]
    argv: list[str]
    web_port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.state.parent / f"{self.name}.out"

    def start(self) -> Harness:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=out)
        web = self.sockets / "web.sock"
        wait_until(
            lambda: web.exists() and self.status() is not None, f"{self.name} web.sock", timeout=20
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def status(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.state / "status.json").read_text()))
        except (OSError, ValueError):
            return None

    def events(self) -> list[dict[str, Any]]:
        db = self.state / "events.sqlite"
        if not db.exists():
            return []
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute("SELECT id, turn, kind, data FROM events ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()
        return [{"id": i, "turn": t, "kind": k, "data": json.loads(d)} for i, t, k, d in rows]

    def turn_ends(self) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events() if e["kind"] == "turn_end"]


def make_harness(
    home: Path,
    broker: Broker,
    name: str,
    *,
    model_url: str | None,
    extra_args: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
) -> Harness:
    manager = name == "hm1nd"
    sockets = broker.open_mailbox("manager" if manager else name)
    root = home / "agents" / name
    state, claude = root / "state", root / "claude"
    state.mkdir(parents=True, exist_ok=True)
    claude.mkdir(parents=True, exist_ok=True)
    agent = {
        "name": name,
        "role": "manager" if manager else "agent",
        "spec": {"model": "haiku", **(spec or {})},
        "web_port": 0,
        "hyperhive_rev": "test",
    }
    (state / "agent.json").write_text(json.dumps(agent))
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(root),
        "HIVE_AGENT": name,
        "HIVE_SOCKET_DIR": str(sockets),
        "HIVE_STATE_DIR": str(state),
        "CLAUDE_CONFIG_DIR": str(claude),
        "CLAUDE_CODE_MAX_RETRIES": "0",
        **({"ANTHROPIC_BASE_URL": model_url, "ANTHROPIC_API_KEY": "test-key"} if model_url else {}),
        **(extra_env or {}),
    }
    if manager:
        env["HIVE_WORKDIR"] = str(root / "agents")
    port = free_port()
    argv = [
        str(BIN / ("hive-m1nd" if manager else "hive-ag3nt")),
        "serve",
        "--web-listen",
        f"127.0.0.1:{port}",
        *(extra_args or []),
    ]
    return Harness(name, state, sockets, claude, env, argv, port)


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group ``pgid``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def claude_pids(h: Harness) -> list[int]:
    return [e["data"]["pid"] for e in h.events() if e["data"].get("text") == "claude started"]

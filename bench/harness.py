"""Harness benchmark: what the harness adds to a claude turn, and what MCP start-up costs.

Runs real processes (demo model, hive-broker, one ``hive-ag3nt serve``) in a
temporary directory and prints a Markdown table:

- message committed → claude process started (goal ≤ 100 ms);
- a whole turn through the harness vs. the same ``claude --print`` run bare,
  same fake, same prompt, same MCP config, interleaved in the same run
  (goal: harness overhead ≤ 50 ms), plus the harness's own accounting
  (turn wall time minus claude's process time);
- MCP server start-up to a ``tools/list`` answer: the stdlib relay
  (``hive-ag3nt mcp``) vs. the full SDK server per turn (``--direct``).

Usage: ``.venv/bin/python bench/harness.py [--turns N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def wait_for(check: Callable[[], Any], timeout: float = 60.0, poll: float = 0.002) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(poll)
    return value


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def events(db: Path, kind: str) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT data FROM events WHERE kind = ? ORDER BY id", (kind,)
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [json.loads(r[0]) for r in rows]


def claude_starts(db: Path) -> list[float]:
    return [e["started_at"] for e in events(db, "note") if e.get("text") == "claude started"]


class Hive:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.model = subprocess.Popen(
            [str(BIN / "hive-ag3nt"), "demo-model", "--port", "0"], stdout=subprocess.PIPE
        )
        assert self.model.stdout is not None
        self.url = self.model.stdout.readline().decode().strip()
        run, state = root / "run", root / "state"
        self.broker = subprocess.Popen(
            [
                str(BIN / "hive-broker"),
                "serve",
                "--run-dir",
                str(run),
                "--state-dir",
                str(state),
                "--log-level",
                "warning",
            ]
        )
        self.control = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(run / "broker.sock")), base_url="http://b"
        )
        wait_for(self._healthy, poll=0.05)
        self.control.put("/mailboxes/bob").raise_for_status()
        self.sockets = run / "agents" / "bob"
        self.state = root / "bob" / "state"
        self.claude_dir = root / "bob" / "claude"
        self.state.mkdir(parents=True)
        self.claude_dir.mkdir(parents=True)
        (self.state / "agent.json").write_text(
            json.dumps({"name": "bob", "role": "agent", "spec": {"model": "haiku"}})
        )
        self.env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(root / "bob"),
            "HIVE_AGENT": "bob",
            "HIVE_SOCKET_DIR": str(self.sockets),
            "HIVE_STATE_DIR": str(self.state),
            "CLAUDE_CONFIG_DIR": str(self.claude_dir),
            "ANTHROPIC_BASE_URL": self.url,
            "ANTHROPIC_API_KEY": "bench",
        }
        self.harness = subprocess.Popen(
            [str(BIN / "hive-ag3nt"), "serve"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for((self.state / "mcp.sock").exists, poll=0.05)
        self.db = self.state / "events.sqlite"

    def _healthy(self) -> bool:
        try:
            return self.control.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        stop(self.harness)
        stop(self.broker)
        stop(self.model)
        self.control.close()

    def harness_turn(self, n: int) -> tuple[float, float, float]:
        """(commit → claude started, commit → turn end seen, harness's own overhead), seconds."""
        before = len(events(self.db, "turn_end"))
        response = self.control.post(
            "/send", json={"from": "operator", "to": "bob", "body": f"bench {n}"}
        )
        committed = time.time()
        response.raise_for_status()
        # Poll gently: a tight loop here would steal CPU from the turn it measures.
        end = wait_for(lambda: events(self.db, "turn_end")[before:], poll=0.05)[0]
        ended = end["ended_at"]
        started = claude_starts(self.db)[-1]
        if not end["ok"]:
            raise RuntimeError(f"turn failed: {end}")
        return started - committed, ended - committed, end["harness_seconds"]

    def bare_turn(self, n: int, mcp_config: Path, cwd: Path) -> float:
        prompt = (
            "You are bob, an agent of hyperhive.\nMessage 0 from operator:\n"
            f"<<<BODY\nbare {n}\nBODY>>>\n"
        )
        env = {
            **self.env,
            "MCP_CONNECTION_NONBLOCKING": "0",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        t0 = time.time()
        out = subprocess.run(
            [
                "claude",
                "--print",
                "--verbose",
                "--continue",
                "--output-format",
                "stream-json",
                "--model",
                "haiku",
                "--mcp-config",
                str(mcp_config),
                "--strict-mcp-config",
                "--allowedTools",
                "mcp__hive__*",
            ],
            input=prompt.encode(),
            capture_output=True,
            cwd=cwd,
            env=env,
            check=True,
        )
        elapsed = time.time() - t0
        result = json.loads(out.stdout.splitlines()[-1])
        if result["is_error"] or result["num_turns"] != 2:
            raise RuntimeError(f"bare turn failed: {result}")
        return elapsed


def mcp_startup(env: dict[str, str], direct: bool) -> float:
    """Spawn → initialize → tools/list answered, like claude does at the start of a turn."""
    argv = [str(BIN / "hive-ag3nt"), "mcp", *(["--direct"] if direct else [])]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"},
        },
    }
    for message in (
        init,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ):
        proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()
    answers = [json.loads(proc.stdout.readline()) for _ in range(2)]
    elapsed = time.perf_counter() - t0
    if not answers[1]["result"]["tools"]:
        raise RuntimeError(f"no tools listed: {answers}")
    proc.stdin.close()
    proc.wait()
    return elapsed


def ms(values: list[float]) -> str:
    low, mid, high = (
        round(v * 1000) for v in (min(values), statistics.median(values), max(values))
    )
    return f"{mid} (min {low}, max {high})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hh-bench-") as tmp:
        hive = Hive(Path(tmp))
        try:
            mcp_env = {**hive.env}
            relay = [mcp_startup(mcp_env, direct=False) for _ in range(args.turns)]
            direct = [mcp_startup(mcp_env, direct=True) for _ in range(args.turns)]
            hive.harness_turn(0)  # warm-up: first conversation in the work dir
            mcp_config = hive.state / "mcp.json"
            direct_config = Path(tmp) / "mcp-direct.json"
            config = json.loads(mcp_config.read_text())
            config["mcpServers"]["hive"]["args"] = ["mcp", "--direct"]
            direct_config.write_text(json.dumps(config))
            bare_cwd = Path(tmp) / "bare"
            bare_cwd.mkdir()
            hive.bare_turn(0, mcp_config, bare_cwd)  # warm-up
            spawn, through, own, bare, bare_direct = [], [], [], [], []
            for n in range(1, args.turns + 1):
                s, t, o = hive.harness_turn(n)
                spawn.append(s)
                through.append(t)
                own.append(o)
                bare.append(hive.bare_turn(n, mcp_config, bare_cwd))
                bare_direct.append(hive.bare_turn(n, direct_config, bare_cwd))
        finally:
            hive.close()
    overhead = statistics.median(through) - statistics.median(bare)
    print(f"harness benchmark, {args.turns} interleaved turns each, ms median (min, max)\n")
    print("| measure | ms |")
    print("|---|---|")
    print(f"| message committed → claude process started | {ms(spawn)} |")
    print(f"| message committed → turn end, through the harness | {ms(through)} |")
    print(f"| bare `claude --print`, same prompt, fake and MCP relay | {ms(bare)} |")
    print(f"| harness overhead (through − bare, medians) | {overhead * 1000:.0f} |")
    print(f"| harness's own time per turn (turn − claude process) | {ms(own)} |")
    print(
        f"| bare `claude --print` with the per-turn SDK server (`--direct`) | {ms(bare_direct)} |"
    )
    print(f"| MCP start → tools/list: relay (`hive-ag3nt mcp`) | {ms(relay)} |")
    print(f"| MCP start → tools/list: per-turn SDK server (`--direct`) | {ms(direct)} |")


if __name__ == "__main__":
    main()

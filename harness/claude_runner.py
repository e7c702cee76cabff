"""Run one ``claude --print`` turn as its own process group and stream its JSON lines.

claude and the MCP servers it starts share one process group, so a stop
(timeout, shutdown) reaches all of them: SIGTERM, a grace period, SIGKILL.
Each stdout line is parsed and handed to the caller as it arrives; the last
``result`` line decides the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperhive.harness.agent_config import AgentConfig

GRACE_SECONDS = 3.0
STDERR_TAIL = 4096
LINE_LIMIT = 1 << 24
#: Passed through from the agent's environment to claude (credentials, endpoints).
PASS_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_", "HIVE_", "LANG", "LC_", "TZ")
PASS_ENV = ("PATH", "HOME", "USER", "TERM", "NODE_OPTIONS", "NODE_EXTRA_CA_CERTS")

OnLine = Callable[[dict[str, Any]], Awaitable[None]]
OnStart = Callable[[int], Awaitable[None]]


@dataclass
class TurnOutcome:
    exit_code: int | None
    result: dict[str, Any] | None = None
    timed_out: bool = False
    stopped: bool = False
    stderr: str = ""
    lines: int = 0

    @property
    def ok(self) -> bool:
        return (
            not self.timed_out
            and not self.stopped
            and self.exit_code == 0
            and self.result is not None
            and not self.result.get("is_error", False)
        )

    @property
    def prompt_too_long(self) -> bool:
        text = str((self.result or {}).get("result", "")) + self.stderr
        return "prompt is too long" in text.lower()

    @property
    def error(self) -> str:
        if self.timed_out:
            return "turn timed out"
        if self.stopped:
            return "stopped: the harness is shutting down"
        if self.result is not None and self.result.get("is_error"):
            return str(self.result.get("result", "error"))[:500]
        if self.exit_code is None:
            return self.stderr.strip() or "claude did not run"
        if self.exit_code != 0:
            return f"claude exited with {self.exit_code}: {self.stderr[-500:].strip()}"
        if self.result is None:
            return "claude printed no result"
        return ""


@dataclass(frozen=True)
class ClaudeSettings:
    """How to start claude; tests and the benchmark override ``claude`` and ``timeout``."""

    claude: str = field(default_factory=lambda: shutil.which("claude") or "claude")
    timeout: float = 15 * 60
    grace: float = GRACE_SECONDS


def mcp_command() -> list[str]:
    """``hive-ag3nt mcp`` from the same install as the running harness."""
    script = Path(sys.executable).parent / "hive-ag3nt"
    if script.exists():
        return [str(script), "mcp"]
    return [sys.executable, "-m", "hyperhive.harness.cli", "mcp"]


def write_mcp_config(cfg: AgentConfig, *, direct: bool = False) -> Path:
    """The ``--mcp-config`` file: one stdio server ``hive`` (the relay, or the full server)."""
    command = mcp_command() + (["--direct"] if direct else [])
    env = {
        "HIVE_STATE_DIR": str(cfg.state_dir),
        "HIVE_SOCKET_DIR": str(cfg.socket_dir),
        "HIVE_AGENT": cfg.name,
    }
    config = {"mcpServers": {"hive": {"command": command[0], "args": command[1:], "env": env}}}
    path = cfg.state_dir / "mcp.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, path)
    return path


def claude_env(cfg: AgentConfig) -> dict[str, str]:
    env = {k: v for k, v in cfg.env.items() if k in PASS_ENV or k.startswith(PASS_ENV_PREFIXES)}
    env.update(
        CLAUDE_CONFIG_DIR=str(cfg.claude_config_dir),
        MCP_CONNECTION_NONBLOCKING="0",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    env.setdefault("PATH", os.defpath)
    return env


def claude_argv(cfg: AgentConfig, settings: ClaudeSettings, mcp_config: Path) -> list[str]:
    argv = [
        settings.claude,
        "--print",
        "--verbose",
        "--continue",
        "--output-format",
        "stream-json",
        "--model",
        cfg.model,
        "--mcp-config",
        str(mcp_config),
        "--strict-mcp-config",
        "--allowedTools",
        ",".join(("mcp__hive__*", *cfg.allowed_tools)),
    ]
    if cfg.system_prompt:
        argv += ["--append-system-prompt", cfg.system_prompt]
    return argv


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when it is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


async def _read_stderr(stream: asyncio.StreamReader, tail: bytearray) -> None:
    while chunk := await stream.read(65536):
        tail.extend(chunk)
        del tail[:-STDERR_TAIL]


async def run_claude(
    argv: list[str],
    *,
    prompt: str,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    on_line: OnLine,
    on_start: OnStart,
    grace: float = GRACE_SECONDS,
) -> TurnOutcome:
    """Run one turn; returns when claude and its group are gone, whatever happened."""
    cwd.mkdir(parents=True, exist_ok=True)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            limit=LINE_LIMIT,
        )
    except OSError as e:
        return TurnOutcome(exit_code=None, stderr=f"cannot start {argv[0]}: {e.strerror}")
    pgid = proc.pid
    outcome = TurnOutcome(exit_code=None)
    tail = bytearray()
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    if stdin is None or stdout is None or stderr is None:  # pipes were asked for
        raise RuntimeError("claude started without pipes")
    try:
        await on_start(pgid)
        stdin.write(prompt.encode())
        with contextlib.suppress(ConnectionError):
            await stdin.drain()
        stdin.close()
        stderr_task = asyncio.create_task(_read_stderr(stderr, tail))
        try:
            async with asyncio.timeout(timeout):
                while line := await stdout.readline():
                    outcome.lines += 1
                    try:
                        data = json.loads(line)
                    except json.JSONDecodeError:
                        data = {"type": "raw", "text": line.decode(errors="replace").rstrip()}
                    if not isinstance(data, dict):
                        data = {"type": "raw", "text": str(data)}
                    if data.get("type") == "result":
                        outcome.result = data
                    await on_line(data)
                await proc.wait()
        except TimeoutError:
            outcome.timed_out = True
        finally:
            await _stop(proc, pgid, grace)
            await stderr_task
    except BaseException:
        await asyncio.shield(_stop(proc, pgid, grace))
        raise
    outcome.exit_code = proc.returncode
    outcome.stderr = tail.decode(errors="replace")
    return outcome


async def _stop(proc: asyncio.subprocess.Process, pgid: int, grace: float) -> None:
    """SIGTERM the group, wait ``grace``, SIGKILL whatever is left; reap claude."""
    if proc.returncode is None and kill_group(pgid, signal.SIGTERM):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await proc.wait()
    kill_group(pgid, signal.SIGKILL)  # stragglers (MCP servers) even after a clean exit
    await proc.wait()

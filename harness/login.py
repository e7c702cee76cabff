"""``claude auth login`` relayed through the web UI, and knowing whether we are logged in.

The CLI prints a URL and waits for the code the browser shows; the web UI
shows that URL and writes the pasted code to the CLI's stdin. When the CLI
exits 0 the harness counts as logged in and the turn loop starts by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from dataclasses import dataclass, field

from hyperhive.harness.agent_config import AgentConfig
from hyperhive.harness.claude_runner import claude_env, kill_group

log = logging.getLogger(__name__)
URL_RE = re.compile(r"https?://[^\s\"'<>]+")
KEY_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
CREDENTIALS = ".credentials.json"
OUTPUT_LIMIT = 8192
MAX_CODE = 4096


def has_credentials(cfg: AgentConfig) -> bool:
    """An API key in the environment, or credentials the CLI stored in its config dir."""
    if any(cfg.env.get(k) for k in KEY_ENV):
        return True
    path = cfg.claude_config_dir / CREDENTIALS
    try:
        return path.stat().st_size > 2
    except OSError:
        return False


@dataclass
class LoginState:
    phase: str = "idle"  # idle | starting | waiting_code | checking | done | failed
    url: str | None = None
    error: str | None = None
    output: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self) -> dict[str, str | None]:
        return {"phase": self.phase, "url": self.url, "error": self.error}


class LoginFlow:
    """At most one login process at a time; ``logged_in`` is set when one succeeds."""

    def __init__(self, cfg: AgentConfig, command: list[str], logged_in: asyncio.Event) -> None:
        self.cfg = cfg
        self.command = command
        self.logged_in = logged_in
        self.state = LoginState()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    def _set(self, phase: str, *, error: str | None = None) -> None:
        self.state.phase = phase
        if error is not None:
            self.state.error = error
        self.state.changed.set()
        self.state.changed = asyncio.Event()

    async def start(self) -> None:
        if self.state.phase in ("starting", "waiting_code", "checking"):
            return
        self.state = LoginState(phase="starting")
        self.cfg.claude_config_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=claude_env(self.cfg),
                start_new_session=True,
            )
        except OSError as e:
            self._set("failed", error=f"cannot run {self.command[0]}: {e.strerror}")
            return
        self._reader = asyncio.create_task(self._follow(self._proc))

    async def _follow(self, proc: asyncio.subprocess.Process) -> None:
        if proc.stdout is None:
            return
        while chunk := await proc.stdout.read(4096):
            text = self.state.output + chunk.decode(errors="replace")
            self.state.output = text[-OUTPUT_LIMIT:]
            if self.state.url is None and (m := URL_RE.search(_strip_ansi(text))):
                self.state.url = m.group(0)
                self._set("waiting_code")
        code = await proc.wait()
        if code == 0:
            self.logged_in.set()
            self._set("done")
        else:
            tail = _strip_ansi(self.state.output).strip().splitlines()[-3:]
            self._set("failed", error=f"login exited with {code}: " + " / ".join(tail))

    async def submit(self, code: str) -> None:
        """Hand the pasted code to the CLI; the outcome arrives when it exits."""
        code = code.strip()
        if not code or len(code) > MAX_CODE or "\n" in code:
            self._set(self.state.phase, error="paste the one-line code the login page showed")
            return
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            self._set("failed", error="no login is waiting for a code; start again")
            return
        proc.stdin.write(code.encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        self._set("checking")

    async def aclose(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", text)

"""Who this harness is and where things are: ``agent.json`` plus the environment contract.

c0re writes ``$HIVE_STATE_DIR/agent.json`` before it starts an agent (DESIGN
§10); every runtime sets ``HIVE_SOCKET_DIR``, ``HIVE_STATE_DIR`` and
``CLAUDE_CONFIG_DIR``. Both are read once, here, and validated into a typed
:class:`AgentConfig`; nothing else in the harness reads the environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hyperhive.errors import HiveError
from hyperhive.names import MANAGER_AGENT, mailbox_for_agent, validate_agent_name

DEFAULT_MODEL = "haiku"
MAX_AGENT_JSON = 1 << 20


class ConfigError(HiveError):
    code = "bad_agent_config"


@dataclass(frozen=True)
class AgentConfig:
    name: str
    role: str
    model: str
    system_prompt: str
    allowed_tools: tuple[str, ...]
    socket_dir: Path
    state_dir: Path
    claude_config_dir: Path
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def manager(self) -> bool:
        return self.role == "manager"

    @property
    def mailbox(self) -> str:
        return mailbox_for_agent(self.name)

    @property
    def broker_sock(self) -> Path:
        return self.socket_dir / "broker.sock"

    @property
    def web_sock(self) -> Path:
        return self.socket_dir / "web.sock"

    @property
    def c0re_sock(self) -> Path | None:
        return self.socket_dir / "c0re.sock" if self.manager else None

    @property
    def mcp_sock(self) -> Path:
        return self.state_dir / "mcp.sock"

    @property
    def events_db(self) -> Path:
        return self.state_dir / "events.sqlite"

    @property
    def status_file(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def inflight_file(self) -> Path:
        return self.state_dir / "inflight.json"


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"agent.json: {what} must be a list of strings")
    return tuple(value)


def load_config(env: Mapping[str, str], *, manager: bool) -> AgentConfig:
    """Read the environment and ``agent.json``; a missing or broken file is a clear error."""
    state_dir = Path(env.get("HIVE_STATE_DIR", "/state"))
    socket_dir = Path(env.get("HIVE_SOCKET_DIR", "/run/hive"))
    claude_dir = Path(env.get("CLAUDE_CONFIG_DIR", str(Path(env.get("HOME", "/root")) / ".claude")))
    path = state_dir / "agent.json"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    if len(raw) > MAX_AGENT_JSON:
        raise ConfigError(f"{path} is larger than {MAX_AGENT_JSON} bytes")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    name = validate_agent_name(data.get("name", env.get("HIVE_AGENT")))
    spec = data.get("spec") or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: spec must be an object")
    role = str(data.get("role") or spec.get("role") or ("manager" if manager else "agent"))
    if role not in ("agent", "manager"):
        raise ConfigError(f"{path}: role must be agent or manager, not {role!r}")
    if manager and name != MANAGER_AGENT:
        raise ConfigError(f"hive-m1nd runs the manager {MANAGER_AGENT}, not {name!r}")
    model = spec.get("model", DEFAULT_MODEL)
    prompt = spec.get("systemPrompt", "")
    if not isinstance(model, str) or not model or not isinstance(prompt, str):
        raise ConfigError(f"{path}: spec.model and spec.systemPrompt must be strings")
    workdir = Path(
        env.get("HIVE_WORKDIR") or ("/agents" if role == "manager" else state_dir / "work")
    )
    return AgentConfig(
        name=name,
        role=role,
        model=model,
        system_prompt=prompt,
        allowed_tools=_strings(spec.get("allowedTools"), "spec.allowedTools"),
        socket_dir=socket_dir,
        state_dir=state_dir,
        claude_config_dir=claude_dir,
        workdir=workdir,
        env=dict(env),
    )

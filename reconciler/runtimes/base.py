"""The seam between the reconcile loop and a runtime backend.

A runtime knows how to run one agent as a container or sandbox and how to
report what is running. The loop decides *what* to do with the pure
``plan(desired, observed)``; the runtime only carries out one
:class:`Action` at a time and raises :class:`TemporaryError` (retry with
backoff) or :class:`PermanentError` (wait for new desired state).

Implementations: ``process`` (bwrap sandbox, the local default), ``nspawn``
(systemd-nspawn, non-NixOS hosts) and ``nixos-container`` (production).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from hyperhive.errors import HiveError

Phase = Literal["pending", "running", "stopped", "failed"]
Role = Literal["agent", "manager"]


@dataclass(frozen=True)
class Desired:
    """One valid agent of applied HEAD, with everything a runtime needs to run it."""

    name: str
    role: Role
    #: The validated ``spec:`` mapping (JSON-able), exactly as in agent.yaml.
    spec: Mapping[str, Any]
    #: sha256 over the canonical spec JSON and agent.nix: a change means Update.
    config_hash: str
    #: The agent's own NixOS module, if its folder has one.
    agent_nix: str | None
    web_port: int
    #: The hyperhive rev this c0re runs; a container built from another is stale.
    hyperhive_rev: str
    #: The applied commit this desired state was read from.
    commit: str

    @property
    def wants_running(self) -> bool:
        return bool(self.spec.get("state", "running") == "running")


@dataclass(frozen=True)
class Observed:
    """What a runtime sees of one agent."""

    name: str
    phase: Phase
    #: The config hash and hyperhive rev recorded when it was created/updated.
    config_hash: str | None = None
    hyperhive_rev: str | None = None
    pid: int | None = None
    message: str = ""
    #: Extra facts a runtime reports (e.g. ResourcesEnforced, sandbox kind).
    details: Mapping[str, Any] = field(default_factory=dict)


class ActionKind(enum.StrEnum):
    CREATE = "create"  # make the container exist (recording hash and rev); not started
    UPDATE = "update"  # config hash differs: switch config (restart if running)
    START = "start"
    STOP = "stop"
    DESTROY = "destroy"  # folder removed from applied; state dirs are kept
    REBUILD = "rebuild"  # recorded hyperhive rev is stale: rebuild from scratch


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    name: str
    #: The desired agent for every kind but DESTROY and STOP (there it may be None).
    desired: Desired | None = None

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name}"


@dataclass(frozen=True)
class RuntimeOptions:
    """How c0re configures whichever runtime it runs (each module has ``make(paths, options)``)."""

    #: Credentials passed to every agent (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, CLAUDE_CODE_*).
    agent_env: Mapping[str, str] = field(default_factory=dict)
    #: Replaces the harness command (``hive-ag3nt serve`` / ``hive-m1nd serve``), e.g. in tests.
    agent_command: Sequence[str] | None = None
    #: Run agents without bwrap when it is missing (process runtime only; says so in status).
    unsafe_no_sandbox: bool = False
    #: The hyperhive source tree the nixos-container runtime's per-agent flakes take as input.
    package_source: Path | None = None


class RuntimeFailure(HiveError):
    code = "runtime_error"


class TemporaryError(RuntimeFailure):
    """Worth retrying with backoff (a busy tool, a transient I/O error)."""


class PermanentError(RuntimeFailure):
    """Retrying cannot help until the desired state changes (bad spec, missing sandbox)."""

    code = "runtime_permanent"


class Runtime(Protocol):
    """One backend. Every method is safe to call again after a crash of c0re."""

    name: str

    async def observe(self) -> dict[str, Observed]:
        """Every agent this runtime manages, keyed by name (adopting survivors)."""
        ...

    async def apply(self, action: Action) -> None:
        """Carry out one action; raise TemporaryError or PermanentError on failure."""
        ...

    def events(self) -> AsyncIterator[str]:
        """Names of agents whose observed state changed on its own (an exit)."""
        ...

    async def close(self) -> None:
        """Stop watching; never stops agents (they outlive c0re)."""
        ...

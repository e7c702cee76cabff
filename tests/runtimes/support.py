"""Shared pieces of the runtime tests: desired agents, polling with a deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hyperhive.names import preferred_web_port
from hyperhive.reconciler.runtimes.base import Action, ActionKind, Desired, Role


def desired(
    name: str,
    *,
    role: Role = "agent",
    config_hash: str = "hash-1",
    rev: str = "rev-1",
    state: str = "running",
) -> Desired:
    return Desired(
        name=name,
        role=role,
        spec={"role": role, "state": state, "model": "haiku"},
        config_hash=config_hash,
        agent_nix=None,
        web_port=preferred_web_port(name),
        hyperhive_rev=rev,
        commit="0" * 40,
    )


def act(kind: ActionKind, d: Desired | str) -> Action:
    if isinstance(d, str):
        return Action(kind, d)
    return Action(kind, d.name, d)


async def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll ``condition`` until truthy; there is no event for "a file appeared"."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

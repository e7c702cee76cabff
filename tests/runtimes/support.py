"""Shared pieces of the runtime tests: desired agents and actions, tolerant JSON reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hyperhive.names import preferred_web_port
from hyperhive.reconciler.runtimes.base import Action, ActionKind, Desired, Role, Runtime


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


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


async def stop_everything(runtimes: Sequence[Runtime]) -> None:
    """Fixture teardown: stop every agent each runtime knows, then close it."""
    for rt in runtimes:
        for name in await rt.observe():
            await rt.apply(Action(ActionKind.STOP, name))
        await rt.close()

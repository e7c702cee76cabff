"""Fixtures for runtime tests: a hive home per test and runtimes that clean up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hyperhive.paths import Paths
from hyperhive.reconciler.runtimes.base import RuntimeOptions
from hyperhive.reconciler.runtimes.process import ProcessRuntime
from tests.conftest import require_tool

from . import agents
from .support import stop_everything

MakeRuntime = Callable[..., ProcessRuntime]


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths.from_home(tmp_path / "hive")
    p.run.mkdir(parents=True)
    p.state.mkdir(parents=True)
    p.operator_token.write_text("secret-operator-token\n")
    p.operator_token.chmod(0o600)
    return p


@pytest.fixture
def bwrap() -> str:
    return require_tool("bwrap")


@pytest.fixture
async def make_runtime(paths: Paths, bwrap: str) -> AsyncIterator[MakeRuntime]:
    """Build process runtimes; at the end every agent they know is stopped."""
    made: list[ProcessRuntime] = []

    def make(
        program: str = agents.IDLE, *args: str, bwrap_path: str | None = bwrap, **options: object
    ) -> ProcessRuntime:
        opts = RuntimeOptions(agent_command=agents.command(program, *args), **options)  # type: ignore[arg-type]
        rt = ProcessRuntime(paths, opts, bwrap=bwrap_path, stop_timeout=2.0)
        made.append(rt)
        return rt

    yield make
    await stop_everything(made)

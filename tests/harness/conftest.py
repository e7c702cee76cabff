"""Fixtures of the harness tests: one demo model per session, a broker per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool
from tests.harness.hive import (
    Broker,
    DemoModel,
    Harness,
    make_harness,
    start_broker,
    start_demo_model,
    stop,
)


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoModel]:
    model = start_demo_model(tmp_path_factory.mktemp("model") / "requests.jsonl")
    yield model
    stop(model.proc)


@pytest.fixture
def claude() -> str:
    return require_tool("claude")


@pytest.fixture
def broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A hive-broker; parametrize it indirectly with a lease in seconds to shorten leases."""
    b = start_broker(tmp_path / "hive", lease_seconds=getattr(request, "param", 600))
    yield b
    stop(b.proc)


@dataclass
class Hive:
    """A broker, the demo model and the harnesses a test starts (all stopped after it)."""

    home: Path
    broker: Broker
    model: DemoModel
    harnesses: list[Harness] = field(default_factory=list)

    def harness(self, name: str, *, start: bool = True, **kwargs: Any) -> Harness:
        kwargs.setdefault("model_url", self.model.url)
        h = make_harness(self.home, self.broker, name, **kwargs)
        self.harnesses.append(h)
        return h.start() if start else h


@pytest.fixture
def hive(tmp_path: Path, broker: Broker, demo_model: DemoModel, claude: str) -> Iterator[Hive]:
    h = Hive(tmp_path, broker, demo_model)
    yield h
    for harness in h.harnesses:
        harness.stop()

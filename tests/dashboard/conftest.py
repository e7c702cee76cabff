"""Fixtures shared by the dashboard and approval tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboard.repos import Hive, agent_yaml


@pytest.fixture
def hive(tmp_path: Path) -> Hive:
    """Applied and proposed repos with alice committed by the operator and merged."""
    h = Hive(tmp_path)
    h.operator_commit({"alice/agent.yaml": agent_yaml("alice")})
    h.merge()
    return h

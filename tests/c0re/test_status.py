"""c0re.sqlite status rows, condition transition times, and the status.json reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperhive.reconciler.status import AgentStatus, Condition, StatusStore, merge_conditions
from hyperhive.reconciler.statusfile import BadStatusFile, agent_of, parse_status, read_into

GOOD = {
    "logged_in": True,
    "busy": False,
    "turns": 3,
    "last_turn_at": "2026-11-26T10:00:00.000Z",
    "cost_usd": 0.25,
    "input_tokens": 10,
    "output_tokens": 20,
}


def test_transition_time_changes_only_with_status() -> None:
    old = [Condition("Ready", "True", "Running", "", "t0")]
    same = merge_conditions(old, [Condition("Ready", "True", "Running", "msg")], "t1")
    assert same[0].last_transition == "t0" and same[0].message == "msg"
    flipped = merge_conditions(old, [Condition("Ready", "False", "Stopped")], "t2")
    assert flipped[0].last_transition == "t2"
    kept = merge_conditions(
        [*old, Condition("LoggedIn", "True", "LoggedIn", "", "t0")],
        [Condition("Ready", "True", "Running")],
        "t3",
    )
    assert [c.type for c in kept] == ["Ready", "LoggedIn"]


def test_store_writes_only_changes_and_survives_reopen(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "c0re.sqlite")
    row = AgentStatus("alice", "c1", "running", (Condition("Ready", "True", "Running"),), "", 8100)
    assert store.write([row]) == 1
    assert store.write([row]) == 0
    store.set_suspended("alice", True)
    assert store.write([row]) == 0  # the suspended flag is kept by a pass's write
    store.close()
    again = StatusStore(tmp_path / "c0re.sqlite")
    got = again.get("alice")
    assert got is not None and got.suspended and got.web_port == 8100
    assert [e["kind"] for e in again.events()] == ["suspended"]
    again.forget("alice")
    assert again.get("alice") is None
    again.close()


def test_parse_status_accepts_the_contract() -> None:
    assert parse_status(json.dumps(GOOD).encode())["turns"] == 3
    assert parse_status(json.dumps({**GOOD, "cost_usd": 1, "extra": 1}).encode())["cost_usd"] == 1.0


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        json.dumps({**GOOD, "turns": "3"}).encode(),
        json.dumps({**GOOD, "turns": True}).encode(),
        json.dumps({**GOOD, "logged_in": 1}).encode(),
        json.dumps({**GOOD, "cost_usd": -1}).encode(),
        json.dumps({k: v for k, v in GOOD.items() if k != "busy"}).encode(),
        json.dumps({**GOOD, "last_turn_at": "x" * 100}).encode(),
        b" " * 20000,
    ],
)
def test_parse_status_refuses_bad_files(raw: bytes) -> None:
    with pytest.raises(BadStatusFile):
        parse_status(raw)


def test_agent_of_takes_the_name_from_a_valid_path(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    assert agent_of(agents / "alice/state/status.json", agents) == "alice"
    assert agent_of(agents / "Evil!/state/status.json", agents) is None
    assert agent_of(agents / "alice/state/x/status.json", agents) is None
    assert agent_of(tmp_path / "other/status.json", agents) is None


def test_read_into_sets_logged_in_and_fields(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "c0re.sqlite")
    store.write([AgentStatus("alice", phase="running")])
    path = tmp_path / "status.json"
    path.write_text(json.dumps(GOOD))
    read_into(store, "alice", path)
    row = store.get("alice")
    assert row is not None
    assert row.condition("LoggedIn").status == "True"  # type: ignore[union-attr]
    assert row.to_json()["turns"] == 3 and row.to_json()["cost_usd"] == 0.25
    path.write_text("{broken")
    read_into(store, "alice", path)
    cond = store.get("alice").condition("LoggedIn")  # type: ignore[union-attr]
    assert cond is not None and cond.status == "Unknown" and cond.reason == "BadStatusFile"
    store.close()

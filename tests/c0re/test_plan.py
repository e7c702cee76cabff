"""plan(desired, observed): every row of the table in reconciler/plan.py, no-op first."""

from __future__ import annotations

import pytest

from hyperhive.reconciler.plan import plan, plan_all
from hyperhive.reconciler.runtimes.base import ActionKind, Desired, Observed, Phase

REV = "rev-1"


def desired(state: str = "running", config_hash: str = "h1") -> Desired:
    return Desired(
        name="alice",
        role="agent",
        spec={"state": state, "role": "agent"},
        config_hash=config_hash,
        agent_nix=None,
        web_port=8100,
        hyperhive_rev=REV,
        commit="c",
    )


def observed(phase: Phase = "running", config_hash: str = "h1", rev: str = REV) -> Observed:
    return Observed(name="alice", phase=phase, config_hash=config_hash, hyperhive_rev=rev)


C, U, S, T, D, R = (
    ActionKind.CREATE,
    ActionKind.UPDATE,
    ActionKind.START,
    ActionKind.STOP,
    ActionKind.DESTROY,
    ActionKind.REBUILD,
)

ROWS = [
    ("no-op running", desired(), observed(), True, []),
    ("no-op stopped", desired("stopped"), observed("stopped"), True, []),
    ("stopped after failure: clean up", desired("stopped"), observed("failed"), True, [T]),
    ("nothing either side", None, None, True, []),
    ("pending and wanted running", desired(), observed("pending"), True, []),
    ("create running", desired(), None, True, [C, S]),
    ("create stopped", desired("stopped"), None, True, [C]),
    ("destroy", None, observed(), True, [D]),
    ("destroy stopped", None, observed("stopped"), True, [D]),
    ("update running", desired(config_hash="h2"), observed(), True, [U]),
    ("update stopped stays stopped", desired("stopped", "h2"), observed("stopped"), True, [U]),
    ("update and start", desired(config_hash="h2"), observed("stopped"), True, [U, S]),
    ("update and stop", desired("stopped", "h2"), observed(), True, [U, T]),
    ("start stopped", desired(), observed("stopped"), True, [S]),
    ("restart failed", desired(), observed("failed"), True, [S]),
    ("stop running", desired("stopped"), observed(), True, [T]),
    ("stop pending", desired("stopped"), observed("pending"), True, [T]),
    ("rebuild stale rev", desired(), observed(rev="old"), True, [R]),
    ("rebuild unknown rev", desired(), observed(rev=None), True, [R]),  # type: ignore[arg-type]
    ("rebuild wins over update", desired(config_hash="h2"), observed(rev="old"), True, [R]),
    ("rebuild and start", desired(), observed("stopped", rev="old"), True, [R, S]),
    ("stale rev, auto_update off", desired(), observed(rev="old"), False, []),
    ("auto_update off still updates", desired(config_hash="h2"), observed(rev="x"), False, [U]),
]


@pytest.mark.parametrize(
    ("d", "o", "auto_update", "want"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_plan_row(
    d: Desired | None, o: Observed | None, auto_update: bool, want: list[ActionKind]
) -> None:
    actions = plan(d, o, auto_update=auto_update, hyperhive_rev=REV)
    assert [a.kind for a in actions] == want
    for a in actions:
        assert a.name == "alice"
        if a.kind is not ActionKind.DESTROY:
            assert a.desired == d


def test_plan_all_lists_only_agents_with_actions() -> None:
    d = {"alice": desired()}
    o = {"alice": observed(), "bob": Observed(name="bob", phase="running")}
    out = plan_all(d, o, hyperhive_rev=REV)
    assert list(out) == ["bob"]
    assert [a.kind for a in out["bob"]] == [D]

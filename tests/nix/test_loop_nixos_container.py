"""The c0re reconcile loop driving the nixos-container runtime (fake tool, real processes)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from hyperhive.clock import FakeClock
from hyperhive.reconciler.gitrepo import commit_files
from hyperhive.reconciler.loop import LoopSettings, Reconciler
from hyperhive.reconciler.status import StatusStore
from tests.c0re.desired_repo import agent_yaml
from tests.c0re.hive_fixture import REV, make_home, make_reconciler
from tests.c0re.test_loop import settle

from .containers import FakeHost, make_host


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHost]:
    h = make_host(tmp_path, monkeypatch)
    yield h
    h.stop_all()


def reconciler_at(host: FakeHost, rev: str) -> Reconciler:
    return Reconciler(
        paths=host.paths,
        runtime=host.runtime(),
        store=StatusStore(host.paths.c0re_db),
        hyperhive_rev=rev,
        settings=LoopSettings(manager=True, auto_update=True),
        clock=FakeClock(),
        rng=random.Random(7),
        port_in_use=lambda p: False,
    )


async def test_loop_creates_hm1nd_converges_and_rebuilds_a_stale_rev(
    host: FakeHost, tmp_path: Path
) -> None:
    paths = make_home(tmp_path)
    assert paths == host.paths
    rt = host.runtime()
    rec = make_reconciler(paths, rt)
    await settle(rec)
    hm1nd = (await rt.observe())["hm1nd"]
    assert (hm1nd.phase, hm1nd.hyperhive_rev) == ("running", REV)
    assert f"--bind={paths.proposed}:/agents" in host.conf("hm1nd")["EXTRA_NSPAWN_FLAGS"]
    row = rec.store.get("hm1nd")
    assert row is not None and row.phase == "running"

    # An operator commit: a new agent is created and started; a no-op pass after it.
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add alice", {})
    rec.enqueue(force=True)
    await settle(rec)
    assert {n: o.phase for n, o in (await rt.observe()).items()} == {
        "hm1nd": "running",
        "alice": "running",
    }
    calls = len(host.calls())
    rec.enqueue(force=True)
    await settle(rec)
    assert {c["argv"][0] for c in host.calls()[calls:]} <= {"list", "status"}
    rec.store.close()

    # hive-c0re upgraded: every container built from the old rev is rebuilt.
    leaders = {n: host.leader(n) for n in ("hm1nd", "alice")}
    rec2 = reconciler_at(host, "rev-upgraded")
    await settle(rec2)
    observed = await rt.observe()
    for name in ("hm1nd", "alice"):
        assert observed[name].hyperhive_rev == "rev-upgraded"
        assert observed[name].phase == "running"
        assert host.leader(name) not in (None, leaders[name])
        spec = json.loads((paths.flake_dir(name) / "spec.json").read_text())
        assert spec["hyperhiveRev"] == "rev-upgraded"
    assert ["update", "h-alice"] in [a[:2] for a in host.argvs()]

    # Removing the folder destroys the container, keeping the agent's state.
    commit_files(paths.applied, {"alice/agent.yaml": None}, "rm alice", {})
    rec2.enqueue(force=True)
    await settle(rec2)
    assert set(await rt.observe()) == {"hm1nd"}
    assert paths.agent_state_dir("alice").is_dir()
    rec2.store.close()

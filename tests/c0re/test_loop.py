"""The reconcile loop on the in-memory runtime: convergence, de-dup, backoff, suspend."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from hyperhive.clock import FakeClock
from hyperhive.reconciler.conditions import runtime_conditions
from hyperhive.reconciler.desired import default_manager_yaml
from hyperhive.reconciler.gitrepo import commit_files
from hyperhive.reconciler.loop import Reconciler
from hyperhive.reconciler.runtimes.base import Observed, PermanentError, TemporaryError
from tests.c0re.desired_repo import agent_yaml
from tests.c0re.hive_fixture import REV, make_home, make_reconciler
from tests.fakes.memory_runtime import MemoryRuntime


async def settle(rec: Reconciler) -> None:
    """Run passes until no worker runs and nothing is dirty (bounded)."""
    for _ in range(20):
        await rec.reconcile_dirty()
        await rec.wait_idle()
        if not rec._dirty and not rec._all_dirty:
            return
    raise AssertionError("the loop did not settle")


async def test_first_pass_creates_and_starts_hm1nd_then_noop(tmp_path: Path) -> None:
    paths = make_home(tmp_path)
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt)
    await settle(rec)
    assert rt.agents["hm1nd"].phase == "running"
    assert rt.log == ["create hm1nd", "start hm1nd"]
    row = rec.store.get("hm1nd")
    assert row is not None and row.phase == "running" and row.web_port == 8000
    conds = {c.type: c for c in row.conditions}
    assert conds["Ready"].status == "True"
    assert conds["Reconciled"].status == "True"
    assert conds["UpToDate"].status == "True"
    stamp = conds["Ready"].last_transition
    # A no-op pass applies nothing and writes nothing.
    rec.enqueue()
    await settle(rec)
    assert rt.log == ["create hm1nd", "start hm1nd"]
    assert rec.store.get("hm1nd") == row
    assert {c.type: c for c in rec.store.get("hm1nd").conditions}["Ready"].last_transition == stamp  # type: ignore[union-attr]


async def test_edit_stop_remove_converge(tmp_path: Path) -> None:
    paths = make_home(tmp_path)
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt)
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
    await settle(rec)
    first_hash = rt.agents["alice"].config_hash
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice", model="opus")}, "m", {})
    rec.enqueue(force=True)
    await settle(rec)
    assert rt.agents["alice"].config_hash != first_hash
    assert rt.calls[("update", "alice")] == 1
    commit_files(
        paths.applied,
        {"alice/agent.yaml": agent_yaml("alice", model="opus", state="stopped")},
        "s",
        {},
    )
    rec.enqueue(force=True)
    await settle(rec)
    assert rt.agents["alice"].phase == "stopped"
    assert rec.store.get("alice").phase == "stopped"  # type: ignore[union-attr]
    commit_files(paths.applied, {"alice/agent.yaml": None}, "rm", {})
    rec.enqueue(force=True)
    await settle(rec)
    assert "alice" not in rt.agents
    assert rec.store.get("alice") is None
    kinds = [e["kind"] for e in rec.store.events(agent="alice")]
    assert kinds[-1] == "destroy"


async def test_invalid_spec_condition_and_others_converge(tmp_path: Path) -> None:
    paths = make_home(tmp_path)
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt)
    commit_files(
        paths.applied,
        {
            "alice/agent.yaml": agent_yaml("alice", state="bogus"),
            "bob/agent.yaml": agent_yaml("bob"),
        },
        "add",
        {},
    )
    await settle(rec)
    assert rt.agents["bob"].phase == "running" and "alice" not in rt.agents
    row = rec.store.get("alice")
    assert row is not None
    rc = row.condition("Reconciled")
    assert rc is not None and rc.status == "False" and rc.reason == "InvalidSpec"
    assert "alice/agent.yaml" in rc.message and "spec.state" in rc.message


async def test_dedup_one_worker_per_agent(tmp_path: Path) -> None:
    paths = make_home(tmp_path, manager=False)
    rt = MemoryRuntime(apply_delay=0.05)
    rec = make_reconciler(paths, rt, manager=False)
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
    await rec.reconcile_dirty()
    assert "alice" in rec._inflight
    for _ in range(5):  # triggers while the worker runs fold into one later pass
        rec.enqueue("alice")
        await rec.reconcile_dirty()
    await settle(rec)
    assert rt.calls[("create", "alice")] == 1
    assert rt.calls[("start", "alice")] == 1


async def test_concurrency_limit(tmp_path: Path) -> None:
    paths = make_home(tmp_path, manager=False)
    rt = MemoryRuntime(apply_delay=0.02)
    rec = make_reconciler(paths, rt, manager=False, concurrency=2)
    names = [f"a{i}" for i in range(6)]
    commit_files(paths.applied, {f"{n}/agent.yaml": agent_yaml(n) for n in names}, "add", {})
    peak = 0
    orig = rt.apply

    async def counting(action: object) -> None:
        nonlocal peak
        peak = max(peak, 2 - rec._limit._value)
        await orig(action)  # type: ignore[arg-type]

    rt.apply = counting  # type: ignore[method-assign]
    await settle(rec)
    assert all(rt.agents[n].phase == "running" for n in names)
    assert peak == 2


async def test_temporary_error_backs_off_with_fake_clock(tmp_path: Path) -> None:
    paths = make_home(tmp_path, manager=False)
    clock = FakeClock()
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt, clock=clock, manager=False)
    rt.fail_next("alice", TemporaryError("tool busy"), times=3)
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
    await settle(rec)
    assert rt.calls[("create", "alice")] == 1
    retry = rec.retries["alice"]
    assert retry.failures == 1 and 0.99 <= retry.at - clock.now() <= 1.0
    row = rec.store.get("alice")
    assert row is not None and row.condition("Reconciled").reason == "TemporaryError"  # type: ignore[union-attr]
    assert "tool busy" in row.last_error
    rec.enqueue("alice")  # not due yet: nothing happens
    await settle(rec)
    assert rt.calls[("create", "alice")] == 1
    delays = []
    for _ in range(2):
        clock.advance(rec.retries["alice"].at - clock.now())
        rec.enqueue("alice")
        await settle(rec)
        delays.append(rec.retries["alice"].at - clock.now())
    assert rt.calls[("create", "alice")] == 3
    assert 1.6 <= delays[0] <= 2.0 and 3.2 <= delays[1] <= 4.0
    clock.advance(5)
    rec.enqueue("alice")
    await settle(rec)
    assert rt.agents["alice"].phase == "running"
    # The cap: 5 minutes, whatever the count.
    assert all(rec.backoff(n) <= 300.0 for n in range(1, 40))
    assert rec.backoff(30) >= 240.0


async def test_new_commit_skips_backoff(tmp_path: Path) -> None:
    paths = make_home(tmp_path, manager=False)
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt, manager=False)
    rt.fail_next("alice", TemporaryError("busy"))
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
    await settle(rec)
    assert rec.retries["alice"].at > rec.clock.now()
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice", model="x")}, "m", {})
    rec.enqueue(force=True)
    await settle(rec)
    assert rt.agents["alice"].phase == "running"


async def test_permanent_error_waits_for_new_desired_state(tmp_path: Path) -> None:
    paths = make_home(tmp_path, manager=False)
    clock = FakeClock()
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt, clock=clock, manager=False)
    rt.fail_next("alice", PermanentError("no sandbox"), times=5)
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
    await settle(rec)
    clock.advance(3600)
    rec.enqueue("alice")
    await settle(rec)
    assert rt.calls[("create", "alice")] == 1
    row = rec.store.get("alice")
    assert row is not None and row.condition("Reconciled").reason == "PermanentError"  # type: ignore[union-attr]
    rt._failures.clear()
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice", model="x")}, "m", {})
    rec.enqueue(force=True)
    await settle(rec)
    assert rt.agents["alice"].phase == "running"


async def test_suspend_leaves_agent_alone_and_resume_converges(tmp_path: Path) -> None:
    paths = make_home(tmp_path, manager=False)
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt, manager=False)
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
    await settle(rec)
    rec.store.set_suspended("alice", True)
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice", state="stopped")}, "s", {})
    rec.enqueue(force=True)
    await settle(rec)
    assert rt.agents["alice"].phase == "running"
    row = rec.store.get("alice")
    assert row is not None and row.suspended and row.to_json()["suspended"] is True
    assert row.condition("Reconciled").reason == "Suspended"  # type: ignore[union-attr]
    rt.crash("alice")  # still observed and shown, not acted on
    rec.enqueue("alice")
    await settle(rec)
    assert rec.store.get("alice").phase == "failed"  # type: ignore[union-attr]
    assert rt.calls[("start", "alice")] == 1
    rec.store.set_suspended("alice", False)
    rec.enqueue("alice", force=True)
    await settle(rec)
    assert rt.agents["alice"].phase == "stopped"  # type: ignore[comparison-overlap]


async def test_crash_restarts_at_once_then_with_backoff(tmp_path: Path) -> None:
    paths = make_home(tmp_path, manager=False)
    clock = FakeClock()
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt, clock=clock, manager=False)
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
    await settle(rec)
    rt.crash("alice")
    rec.enqueue("alice")
    await settle(rec)
    assert rt.calls[("start", "alice")] == 2 and rt.agents["alice"].phase == "running"
    rt.crash("alice")  # crashes again at once: waits for its backoff
    rec.enqueue("alice")
    await settle(rec)
    assert rt.calls[("start", "alice")] == 2
    clock.advance(1.0)
    rec.enqueue("alice")
    await settle(rec)
    assert rt.calls[("start", "alice")] == 3
    assert "exited" in [e["kind"] for e in rec.store.events(agent="alice")]


async def test_stale_rev_rebuilds_unless_auto_update_off(tmp_path: Path) -> None:
    paths = make_home(tmp_path, manager=False)
    commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt, manager=False, auto_update=False)
    await settle(rec)
    o = rt.agents["alice"]
    rt.agents["alice"] = Observed("alice", "running", o.config_hash, "old-rev")
    rec.enqueue()
    await settle(rec)
    assert rt.calls[("rebuild", "alice")] == 0
    up = rec.store.get("alice").condition("UpToDate")  # type: ignore[union-attr]
    assert up is not None and up.status == "False" and "auto_update is off" in up.message
    rec2 = make_reconciler(paths, rt, manager=False)
    await settle(rec2)
    assert rt.calls[("rebuild", "alice")] == 1 and rt.agents["alice"].hyperhive_rev == REV
    assert rec2.store.get("alice").condition("UpToDate").status == "True"  # type: ignore[union-attr]


async def test_hm1nd_restored_without_approval(tmp_path: Path) -> None:
    paths = make_home(tmp_path)
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt)
    await settle(rec)
    commit_files(paths.applied, {"hm1nd/agent.yaml": None}, "oops", {})
    rec.enqueue(force=True)
    await settle(rec)
    assert rt.agents["hm1nd"].phase == "running"
    assert rt.calls[("destroy", "hm1nd")] == 0
    assert (paths.applied / "hm1nd" / "agent.yaml").read_bytes() == default_manager_yaml()


async def test_run_reacts_to_an_operator_git_commit(tmp_path: Path) -> None:
    paths = make_home(tmp_path, manager=False)
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt, manager=False)

    async def run_loop() -> None:
        async with asyncio.TaskGroup() as tg:
            await rec.run(tg)

    runner = asyncio.create_task(run_loop())
    try:
        await asyncio.wait_for(rec.watching.wait(), 5)
        commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
        async with asyncio.timeout(1.0):  # the goal: an operator's commit runs within 1 s
            while rt.agents.get("alice") is None or rt.agents["alice"].phase != "running":
                rt.applied.clear()
                await rt.applied.wait()
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    assert runner.cancelled()


def test_runtime_details_become_conditions() -> None:
    o = Observed(
        "a",
        "running",
        details={"Sandbox": "none", "ResourcesEnforced": False, "ResourcesReason": "no cgroup"},
    )
    conds = {c.type: c for c in runtime_conditions(o)}
    assert conds["Sandboxed"].status == "False" and "WITHOUT" in conds["Sandboxed"].message
    assert conds["ResourcesEnforced"].message == "no cgroup"
    assert runtime_conditions(Observed("a", "running")) == []
    assert [c.type for c in runtime_conditions(o, wants_resources=False)] == ["Sandboxed"]
    assert runtime_conditions(None) == []

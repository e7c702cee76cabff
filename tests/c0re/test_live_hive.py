"""Integration: real git, a real hive-broker and hive-c0re process, the real process runtime."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest

from tests.c0re.desired_repo import agent_yaml
from tests.c0re.live_hive import LiveHive, git, git_commit_file
from tests.conftest import require_tool

pytestmark = pytest.mark.slow


@pytest.fixture
async def hive(tmp_path: Path) -> AsyncIterator[LiveHive]:
    require_tool("bwrap")
    h = LiveHive(tmp_path / "hive")
    try:
        await h.start_broker()
        await h.start_c0re()
        yield h
    finally:
        await h.stop()


def condition(agent: dict[str, object], type_: str) -> dict[str, str]:
    for c in agent["conditions"]:  # type: ignore[attr-defined]
        if c["type"] == type_:
            return dict(c)
    return {}


async def test_commit_edit_stop_invalid_remove(hive: LiveHive) -> None:
    applied = hive.paths.applied
    await hive.until(lambda: hive.phase_is("hm1nd", "running"), "hm1nd runs")
    assert hive.paths.mailbox_sock("manager").exists()

    # An operator's `git commit` is applied within 1 s.
    pidfile = hive.paths.agent_pidfile("alice")
    t0 = time.monotonic()
    git_commit_file(applied, "alice/agent.yaml", agent_yaml("alice", model="haiku"), "add alice")
    await hive.until(pidfile.exists, "alice's process is started", timeout=5)
    latency = time.monotonic() - t0
    assert latency < 1.0, f"commit → runtime apply took {latency:.2f} s"
    await hive.until(lambda: hive.phase_is("alice", "running"), "alice is running")
    assert len(hive.processes("alice")) == 1
    assert hive.paths.mailbox_sock("alice").exists()
    alice = await hive.agent("alice")
    assert alice is not None
    assert condition(alice, "Sandboxed")["status"] == "True"
    assert condition(alice, "ResourcesEnforced") == {}  # its spec sets no resources
    await hive.until(
        lambda: _logged_in(hive, "alice"), "status.json becomes LoggedIn=True", timeout=5
    )

    # Edit → Update: the agent.json the runtime writes carries the new spec.
    agent_json = hive.paths.agent_state_dir("alice") / "agent.json"
    git_commit_file(applied, "alice/agent.yaml", agent_yaml("alice", model="opus"), "opus")
    await hive.until(
        lambda: json.loads(agent_json.read_text())["spec"]["model"] == "opus", "alice updated"
    )
    await hive.until(lambda: hive.phase_is("alice", "running"), "alice runs again")

    # state: stopped → stopped, process gone.
    stopped = agent_yaml("alice", model="opus", state="stopped")
    git_commit_file(applied, "alice/agent.yaml", stopped, "stop alice")
    await hive.until(lambda: hive.phase_is("alice", "stopped"), "alice is stopped")
    await hive.until(lambda: not hive.processes("alice"), "alice's process is gone")

    # An invalid agent gets its condition; the others keep converging.
    bad_bob = agent_yaml("bob").replace(b"hyperhive.dev/v1", b"v0")
    git_commit_file(applied, "bob/agent.yaml", bad_bob, "bad bob")
    git_commit_file(applied, "alice/agent.yaml", agent_yaml("alice"), "start alice")
    await hive.until(lambda: hive.phase_is("alice", "running"), "alice runs despite bob")
    bob = await hive.agent("bob")
    assert bob is not None
    rc = condition(bob, "Reconciled")
    assert rc["status"] == "False" and rc["reason"] == "InvalidSpec"
    assert rc["message"].startswith("bob/agent.yaml: field apiVersion:")

    # Removing the folder destroys the agent and closes its mailbox.
    git_commit_file(applied, "alice/agent.yaml", None, "remove alice")
    await hive.until(lambda: _gone(hive, "alice"), "alice is destroyed")
    assert not hive.processes("alice")
    assert not hive.paths.mailbox_sock("alice").exists()
    events = (await hive.ask(cmd="events", agent="alice"))["events"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("create") == 1 and kinds[-1] == "destroy"


async def _logged_in(hive: LiveHive, name: str) -> bool:
    a = await hive.agent(name)
    return a is not None and condition(a, "LoggedIn").get("status") == "True"


async def _gone(hive: LiveHive, name: str) -> bool:
    return await hive.agent(name) is None and not hive.paths.agent_pidfile(name).exists()


async def test_kill9_mid_pass_then_restart_converges(hive: LiveHive) -> None:
    names = [f"w{i}" for i in range(4)]
    await hive.until(lambda: hive.phase_is("hm1nd", "running"), "hm1nd runs")
    repo = hive.paths.applied
    for n in names:
        (repo / n).mkdir()
        (repo / n / "agent.yaml").write_bytes(agent_yaml(n))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "four workers")
    # Kill -9 as soon as the first worker's process exists: the pass is mid-flight.
    await hive.until(
        lambda: any(hive.paths.agent_pidfile(n).exists() for n in names), "a worker starts"
    )
    hive.kill9_c0re()
    await hive.start_c0re()
    for n in names:
        await hive.until(partial(hive.phase_is, n, "running"), f"{n} runs after restart")
    events = (await hive.ask(cmd="events", limit=1000))["events"]
    for n in [*names, "hm1nd"]:
        assert len(hive.processes(n)) == 1, _why(hive, n, events)
    creates = Counter(e["agent"] for e in events if e["kind"] == "create")
    assert all(c == 1 for c in creates.values()), creates

    # SIGTERM (a service restart) leaves every agent running; the next c0re adopts them.
    before = {n: hive.processes(n) for n in [*names, "hm1nd"]}
    last = max(e["id"] for e in events)
    assert await hive.sigterm_c0re() == 0
    assert {n: hive.processes(n) for n in before} == before
    await hive.start_c0re()
    await hive.ask(cmd="reconcile")
    for n in names:
        assert await hive.phase_is(n, "running")
    assert {n: hive.processes(n) for n in before} == before
    acted = [e for e in (await hive.ask(cmd="events", limit=1000))["events"] if e["id"] > last]
    assert not [e for e in acted if e["kind"] in ("create", "start", "stop")], acted


def _why(hive: LiveHive, name: str, events: object) -> str:
    """Diagnostics for a duplicate agent process: who started what, and when."""
    lines = [f"{name}: {hive.processes(name)}"]
    for pid in hive.processes(name):
        chain: list[str] = []
        p = pid
        while p > 1 and len(chain) < 5:
            try:
                stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                break
            argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[:3]
            chain.append(f"{p}(start {stat[19]}, sid {stat[3]}, {argv!r})")
            p = int(stat[1])
        lines.append(" <- ".join(chain))
    with contextlib.suppress(OSError):
        lines.append("pidfile: " + hive.paths.agent_pidfile(name).read_text())
    lines.append(f"events: {events}")
    lines.append(hive.logs())
    return "\n".join(lines)

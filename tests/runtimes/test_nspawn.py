"""The nspawn runtime against real systemd-nspawn (--register=no --keep-unit here)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hyperhive.paths import Paths
from hyperhive.reconciler.runtimes.base import ActionKind, PermanentError, RuntimeOptions
from hyperhive.reconciler.runtimes.nspawn import NspawnRuntime
from hyperhive.reconciler.runtimes.pidfile import descendants, identify, is_alive
from hyperhive.reconciler.runtimes.process import ProcessRuntime
from tests.conftest import require_tool
from tests.polling import until

from . import agents
from .support import act, desired, read_json, stop_everything

CHECKOUT = Path(__file__).resolve().parents[2]
MakeNspawn = Callable[..., NspawnRuntime]


@pytest.fixture
async def make_nspawn(paths: Paths) -> AsyncIterator[MakeNspawn]:
    tool = require_tool("systemd-nspawn")
    made: list[NspawnRuntime] = []

    def make(program: str = agents.IDLE, *args: str, nspawn: str = tool) -> NspawnRuntime:
        opts = RuntimeOptions(
            agent_command=agents.command(program, *args), agent_env={"ANTHROPIC_API_KEY": "k"}
        )
        rt = NspawnRuntime(paths, opts, nspawn=nspawn, stop_timeout=5.0)
        made.append(rt)
        return rt

    yield make
    await stop_everything(made)


async def test_nspawn_lifecycle_adoption_and_exit_event(
    paths: Paths, make_nspawn: MakeNspawn
) -> None:
    rt = make_nspawn()
    alice = desired("alice")
    await rt.apply(act(ActionKind.CREATE, alice))
    assert (await rt.observe())["alice"].phase == "stopped"
    await rt.apply(act(ActionKind.START, alice))
    status = paths.agent_state_dir("alice") / "status.json"
    await until(lambda: read_json(status), "status.json written inside the container")
    obs = (await rt.observe())["alice"]
    assert obs.phase == "running" and obs.details["Sandbox"] == "systemd-nspawn"
    pid = obs.pid
    assert pid is not None
    payload = [m for m in descendants(pid) if not m.namespace_init]
    assert len(payload) == 1

    await rt.close()  # c0re restarts: the container keeps running and is adopted
    again = make_nspawn()
    events = again.events()
    assert (await again.observe())["alice"].pid == pid
    await again.apply(act(ActionKind.START, alice))
    assert (await again.observe())["alice"].pid == pid

    os.kill(payload[0].proc.pid, 15)  # the harness exits on its own
    assert await asyncio.wait_for(events.__anext__(), 10) == "alice"
    assert (await again.observe())["alice"].phase == "failed"
    await again.apply(act(ActionKind.START, alice))
    assert (await again.observe())["alice"].phase == "running"

    await again.apply(act(ActionKind.REBUILD, desired("alice", rev="rev-2")))
    obs = (await again.observe())["alice"]
    assert obs.phase == "running" and obs.hyperhive_rev == "rev-2"
    await again.apply(act(ActionKind.DESTROY, "alice"))
    assert "alice" not in await again.observe()
    assert not again.root_dir("alice").exists() and status.exists()


async def test_nspawn_sandbox_hides_host_and_stops_whole_tree(
    paths: Paths, make_nspawn: MakeNspawn, tmp_path: Path
) -> None:
    hidden = [
        str(CHECKOUT / "reconciler"),
        str(CHECKOUT / ".git"),
        str(paths.run),
        str(paths.state),
        str(paths.operator_token),
    ]
    visible = ["/run/hive", "/state", "/root/.claude", "/usr/bin/claude"]
    writable = ["/run/hive/probe", "/state/probe", "/root/.claude/probe"]
    readonly = ["/usr/probe", "/etc/probe"]
    rt = make_nspawn(agents.PROBE, json.dumps(hidden + visible), json.dumps(writable + readonly))
    bob = desired("bob")
    await rt.apply(act(ActionKind.CREATE, bob))
    await rt.apply(act(ActionKind.START, bob))
    probe = await until(
        lambda: read_json(paths.agent_state_dir("bob") / "probe.json"), "probe", timeout=20
    )
    assert {p: probe["read"][p] for p in hidden} == dict.fromkeys(hidden, False)
    assert {p: probe["read"][p] for p in visible} == dict.fromkeys(visible, True)
    assert {p: probe["write"][p] for p in writable} == dict.fromkeys(writable, True)
    assert {p: probe["write"][p] for p in readonly} == dict.fromkeys(readonly, False)
    assert probe["cwd"] == "/state/work"
    assert probe["sysctl_writable"] is False
    assert probe["import"].endswith("__init__.py"), probe["import"]
    env = probe["env"]
    for key, value in {
        "HIVE_AGENT": "bob",
        "HIVE_SOCKET_DIR": "/run/hive",
        "HIVE_STATE_DIR": "/state",
        "CLAUDE_CONFIG_DIR": "/root/.claude",
        "HOME": "/root",
        "ANTHROPIC_API_KEY": "k",
    }.items():
        assert env[key] == value
    pid = (await rt.observe())["bob"].pid
    assert pid is not None
    tree = descendants(pid)
    await rt.apply(act(ActionKind.STOP, "bob"))
    assert not any(is_alive(m.proc) for m in tree)
    assert (await rt.observe())["bob"].phase == "stopped"


async def test_nspawn_missing_tool_is_permanent(paths: Paths, make_nspawn: MakeNspawn) -> None:
    rt = make_nspawn(nspawn="/nonexistent/systemd-nspawn")
    carol = desired("carol")
    await rt.apply(act(ActionKind.CREATE, carol))
    with pytest.raises(PermanentError, match="systemd-container"):
        await rt.apply(act(ActionKind.START, carol))


async def test_switching_runtime_takes_the_agent_over(
    paths: Paths, make_nspawn: MakeNspawn, bwrap: str
) -> None:
    """c0re restarted with another runtime: the old process is stopped, not left behind."""
    process = ProcessRuntime(
        paths, RuntimeOptions(agent_command=agents.command(agents.IDLE)), bwrap=bwrap
    )
    dan = desired("dan")
    await process.apply(act(ActionKind.CREATE, dan))
    await process.apply(act(ActionKind.START, dan))
    old = (await process.observe())["dan"].pid
    assert old is not None
    await process.close()

    nspawn = make_nspawn()
    assert "dan" not in await nspawn.observe()
    await nspawn.apply(act(ActionKind.CREATE, dan))
    assert not os.path.exists(f"/proc/{old}/cmdline") or identify(old) is None
    await nspawn.apply(act(ActionKind.START, dan))
    obs = (await nspawn.observe())["dan"]
    assert obs.phase == "running" and obs.pid != old
    assert "dan" not in await process.observe()

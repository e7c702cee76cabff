"""The process runtime against real bwrap, with minimal idle agents."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from hyperhive.paths import Paths
from hyperhive.reconciler.runtimes import agentfiles
from hyperhive.reconciler.runtimes.base import ActionKind, PermanentError, TemporaryError
from hyperhive.reconciler.runtimes.pidfile import (
    ProcessId,
    descendants,
    identify,
    is_alive,
    read_pidfile,
    write_pidfile,
)
from hyperhive.reconciler.runtimes.process import ProcessRuntime
from tests.polling import until

from . import agents
from .conftest import MakeRuntime
from .support import act, desired, read_json

CHECKOUT = Path(__file__).resolve().parents[2]


async def running_pid(rt: ProcessRuntime, name: str) -> int:
    observed = (await rt.observe())[name]
    assert observed.phase == "running", observed
    assert observed.pid is not None
    return observed.pid


async def test_lifecycle_create_start_update_rebuild_stop_destroy(
    paths: Paths, make_runtime: MakeRuntime
) -> None:
    rt = make_runtime()
    alice = desired("alice")
    await rt.apply(act(ActionKind.CREATE, alice))
    obs = (await rt.observe())["alice"]
    assert (obs.phase, obs.config_hash, obs.hyperhive_rev) == ("stopped", "hash-1", "rev-1")
    assert obs.details["ResourcesEnforced"] is False and obs.details["Sandbox"] == "bwrap"
    agent_json = read_json(paths.agent_state_dir("alice") / "agent.json")
    assert agent_json == {
        "name": "alice",
        "role": "agent",
        "spec": dict(alice.spec),
        "web_port": alice.web_port,
        "hyperhive_rev": "rev-1",
    }
    assert stat.S_IMODE(paths.agent_socket_dir("alice").stat().st_mode) == 0o700
    assert (paths.agent_state_dir("alice") / "work").is_dir()
    assert paths.agent_claude_dir("alice").is_dir()

    await rt.apply(act(ActionKind.START, alice))
    pid1 = await running_pid(rt, "alice")
    status = paths.agent_state_dir("alice") / "status.json"
    await until(lambda: read_json(status), "status.json")
    await rt.apply(act(ActionKind.START, alice))  # idempotent: no second process
    assert await running_pid(rt, "alice") == pid1

    updated = desired("alice", config_hash="hash-2")
    await rt.apply(act(ActionKind.UPDATE, updated))
    pid2 = await running_pid(rt, "alice")
    assert pid2 != pid1 and not os.path.exists(f"/proc/{pid1}/stat")
    assert (await rt.observe())["alice"].config_hash == "hash-2"

    rebuilt = desired("alice", config_hash="hash-2", rev="rev-2")
    await rt.apply(act(ActionKind.REBUILD, rebuilt))
    obs = (await rt.observe())["alice"]
    assert obs.phase == "running" and obs.pid != pid2 and obs.hyperhive_rev == "rev-2"
    assert read_json(paths.agent_state_dir("alice") / "agent.json")["hyperhive_rev"] == "rev-2"

    await rt.apply(act(ActionKind.STOP, "alice"))
    assert (await rt.observe())["alice"].phase == "stopped"
    await rt.apply(act(ActionKind.STOP, "alice"))  # idempotent
    await rt.apply(act(ActionKind.REBUILD, rebuilt))  # rebuilding a stopped agent keeps it stopped
    assert (await rt.observe())["alice"].phase == "stopped"

    await rt.apply(act(ActionKind.START, rebuilt))
    await running_pid(rt, "alice")
    await rt.apply(act(ActionKind.DESTROY, "alice"))
    assert "alice" not in await rt.observe()
    assert not paths.agent_pidfile("alice").exists()
    assert status.exists(), "destroy keeps state; purging is c0re's decision"
    await rt.apply(act(ActionKind.DESTROY, "alice"))  # idempotent


async def test_adoption_after_c0re_restart_starts_no_duplicate(
    paths: Paths, make_runtime: MakeRuntime
) -> None:
    first = make_runtime()
    bob = desired("bob")
    await first.apply(act(ActionKind.CREATE, bob))
    await first.apply(act(ActionKind.START, bob))
    pid = await running_pid(first, "bob")
    await until(
        lambda: read_json(paths.agent_state_dir("bob") / "status.json"), "bob's status.json"
    )
    await first.close()  # c0re goes away; the agent must not

    second = make_runtime()
    assert await running_pid(second, "bob") == pid
    await second.apply(act(ActionKind.START, bob))
    assert await running_pid(second, "bob") == pid
    tree = descendants(pid)
    assert sum(1 for m in tree if not m.namespace_init) == 1, "exactly one agent process"

    # The adopted agent is watched: its exit is a runtime event of the new runtime.
    events = second.events()
    for member in tree:
        os.kill(member.proc.pid, 9)
    assert await wait_for_event(events) == "bob"
    assert (await second.observe())["bob"].phase == "failed"


async def test_agent_started_but_not_recorded_is_adopted_on_start(
    paths: Paths, make_runtime: MakeRuntime
) -> None:
    """c0re killed between starting an agent and writing its pidfile: no duplicate."""
    first = make_runtime()
    kim = desired("kim")
    await first.apply(act(ActionKind.CREATE, kim))
    await first.apply(act(ActionKind.START, kim))
    pid = await running_pid(first, "kim")
    await first.close()
    paths.agent_pidfile("kim").unlink()

    second = make_runtime()
    assert (await second.observe())["kim"].phase == "stopped"
    await second.apply(act(ActionKind.START, kim))
    assert await running_pid(second, "kim") == pid


async def test_agent_that_died_while_c0re_was_down_is_failed(
    paths: Paths, make_runtime: MakeRuntime
) -> None:
    first = make_runtime()
    lea = desired("lea")
    await first.apply(act(ActionKind.CREATE, lea))
    await first.apply(act(ActionKind.START, lea))
    pid = await running_pid(first, "lea")
    await first.close()
    events = first.events()
    with pytest.raises(StopAsyncIteration):  # close() ends the event stream
        await wait_for_event(events)
    tree = descendants(pid)
    for member in tree:
        os.kill(member.proc.pid, 9)
    await until(lambda: identify(pid) is None, "the agent to die")
    assert not any(is_alive(m.proc) for m in tree)

    second = make_runtime()
    obs = (await second.observe())["lea"]
    assert obs.phase == "failed" and "not watching" in obs.message
    await second.apply(act(ActionKind.START, lea))
    assert await running_pid(second, "lea") != pid


async def wait_for_event(events: object) -> str:
    return await asyncio.wait_for(events.__anext__(), 10)  # type: ignore[attr-defined]


async def test_stale_pidfile_is_not_adopted(paths: Paths, make_runtime: MakeRuntime) -> None:
    rt = make_runtime()
    carol = desired("carol")
    await rt.apply(act(ActionKind.CREATE, carol))
    me = identify(os.getpid())
    assert me is not None
    # A pid that lives, but started at another time: a reused pid, not our agent.
    write_pidfile(paths.agent_pidfile("carol"), ProcessId(me.pid, me.start_time + 1))
    obs = (await rt.observe())["carol"]
    assert obs.phase == "failed" and obs.pid is None
    await rt.apply(act(ActionKind.START, carol))
    pid = await running_pid(rt, "carol")
    assert pid != os.getpid()


async def test_sandbox_hides_host_and_sets_exact_env(
    paths: Paths, make_runtime: MakeRuntime, tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("x")
    hidden = [
        str(CHECKOUT / "reconciler"),
        str(CHECKOUT / ".git"),
        str(CHECKOUT / "pyproject.toml"),
        str(paths.run),
        str(paths.state),
        str(paths.operator_token),
        str(paths.agent_root("dave")),
        str(secret),
        "/root/.bash_history",
    ]
    visible = ["/run/hive", "/state", "/root/.claude", "/usr/bin/claude", "/etc/passwd"]
    writable = ["/run/hive/probe", "/state/probe", "/root/.claude/probe"]
    readonly = [
        "/usr/probe",
        "/etc/probe",
        f"{os.path.realpath(sys.prefix)}/probe",
        # Per-UTS-namespace, so harmless should the cover ever fail; stands for all sysctls.
        "/proc/sys/kernel/hostname",
    ]
    rt = make_runtime(
        agents.PROBE,
        json.dumps(hidden + visible),
        json.dumps(writable + readonly),
        agent_env={"ANTHROPIC_API_KEY": "sk-test", "HIVE_AGENT": "forged"},
    )
    os.environ["HYPERHIVE_LEAK_CHECK"] = "leaked"
    try:
        dave = desired("dave")
        await rt.apply(act(ActionKind.CREATE, dave))
        await rt.apply(act(ActionKind.START, dave))
    finally:
        del os.environ["HYPERHIVE_LEAK_CHECK"]
    probe = await until(lambda: read_json(paths.agent_state_dir("dave") / "probe.json"), "probe")
    for path in hidden:
        assert probe["read"][path] is False, f"{path} is visible in the sandbox"
    for path in visible:
        assert probe["read"][path] is True, f"{path} is missing in the sandbox"
    for path in writable:
        assert probe["write"][path] is True, f"{path} is not writable"
    for path in readonly:
        assert probe["write"][path] is False, f"{path} is writable"
    assert (paths.agent_socket_dir("dave") / "probe").exists()
    assert (paths.agent_claude_dir("dave") / "probe").exists()
    assert probe["cwd"] == "/state/work"
    assert probe["sysctl_writable"] is False
    assert probe["import"].endswith("__init__.py"), probe["import"]
    env = probe["env"]
    # PWD is bwrap's (it sets it with --chdir); nothing of the host's env is there.
    assert set(env) - {"PWD"} == {
        "PATH",
        "LANG",
        "HIVE_AGENT",
        "HIVE_SOCKET_DIR",
        "HIVE_STATE_DIR",
        "CLAUDE_CONFIG_DIR",
        "HOME",
        "ANTHROPIC_API_KEY",
    }, env
    assert env["HIVE_AGENT"] == "dave"
    assert (env["HIVE_SOCKET_DIR"], env["HIVE_STATE_DIR"]) == ("/run/hive", "/state")
    assert (env["CLAUDE_CONFIG_DIR"], env["HOME"]) == ("/root/.claude", "/root")
    assert env["ANTHROPIC_API_KEY"] == "sk-test"


async def test_manager_gets_proposed_at_agents(paths: Paths, make_runtime: MakeRuntime) -> None:
    rt = make_runtime(agents.PROBE, json.dumps(["/agents"]), json.dumps(["/agents/probe"]))
    hm1nd = desired("hm1nd", role="manager")
    await rt.apply(act(ActionKind.CREATE, hm1nd))
    await rt.apply(act(ActionKind.START, hm1nd))
    probe = await until(lambda: read_json(paths.agent_state_dir("hm1nd") / "probe.json"), "probe")
    assert probe["cwd"] == "/agents"
    assert probe["write"]["/agents/probe"] is True
    assert (paths.proposed / "probe").exists()
    assert probe["env"]["HIVE_AGENT"] == "hm1nd"
    assert paths.agent_socket_dir("hm1nd") == paths.manager_dir


async def test_exit_is_an_event_and_observed_failed(
    paths: Paths, make_runtime: MakeRuntime
) -> None:
    rt = make_runtime(agents.EXITS)
    events = rt.events()
    erin = desired("erin")
    await rt.apply(act(ActionKind.CREATE, erin))
    await rt.apply(act(ActionKind.START, erin))
    assert await wait_for_event(events) == "erin"
    obs = (await rt.observe())["erin"]
    assert obs.phase == "failed" and obs.pid is None
    assert "status 3" in obs.message and "agent giving up now" in obs.message
    await rt.apply(act(ActionKind.STOP, "erin"))
    assert (await rt.observe())["erin"].phase == "stopped"


async def test_stop_kills_the_whole_tree(paths: Paths, make_runtime: MakeRuntime) -> None:
    rt = make_runtime(agents.FAMILY)
    frank = desired("frank")
    await rt.apply(act(ActionKind.CREATE, frank))
    await rt.apply(act(ActionKind.START, frank))
    pid = await running_pid(rt, "frank")
    await until((paths.agent_state_dir("frank") / "grandchild").exists, "frank's grandchild")
    tree = descendants(pid)
    assert len([m for m in tree if not m.namespace_init]) >= 2
    await rt.apply(act(ActionKind.STOP, "frank"))
    assert not any(is_alive(m.proc) for m in tree), "a process of the agent survived stop"
    assert read_pidfile(paths.agent_pidfile("frank")) is None


async def test_stop_escalates_to_sigkill(paths: Paths, make_runtime: MakeRuntime) -> None:
    rt = make_runtime(agents.STUBBORN)
    rt.stop_timeout = 0.5
    gina = desired("gina")
    await rt.apply(act(ActionKind.CREATE, gina))
    await rt.apply(act(ActionKind.START, gina))
    pid = await running_pid(rt, "gina")
    await until((paths.agent_state_dir("gina") / "stubborn").exists, "gina to ignore SIGTERM")
    tree = descendants(pid)
    await rt.apply(act(ActionKind.STOP, "gina"))
    assert not any(is_alive(m.proc) for m in tree)
    assert (await rt.observe())["gina"].phase == "stopped"


async def test_missing_bwrap_refuses_unless_unsafe(paths: Paths, make_runtime: MakeRuntime) -> None:
    rt = make_runtime(bwrap_path="/nonexistent/bwrap")
    hank = desired("hank")
    await rt.apply(act(ActionKind.CREATE, hank))
    with pytest.raises(PermanentError, match="unsandboxed"):
        await rt.apply(act(ActionKind.START, hank))
    assert (await rt.observe())["hank"].phase == "stopped"

    unsafe = make_runtime(bwrap_path="/nonexistent/bwrap", unsafe_no_sandbox=True)
    await unsafe.apply(act(ActionKind.START, hank))
    obs = (await unsafe.observe())["hank"]
    assert obs.phase == "running" and obs.details["Sandbox"] == "none"
    status = await until(
        lambda: read_json(paths.agent_state_dir("hank") / "status.json"), "hank's status.json"
    )
    assert status["turns"] == 0
    await unsafe.apply(act(ActionKind.STOP, "hank"))
    assert (await unsafe.observe())["hank"].phase == "stopped"


async def test_records_live_outside_the_agent_writable_state(
    paths: Paths, make_runtime: MakeRuntime
) -> None:
    rt = make_runtime()
    ivy = desired("ivy")
    await rt.apply(act(ActionKind.CREATE, ivy))
    # The agent can rewrite agent.json; c0re's view of what it created does not change.
    (paths.agent_state_dir("ivy") / "agent.json").write_text('{"hyperhive_rev": "forged"}')
    assert agentfiles.read_record(paths, "ivy") == agentfiles.record_for(ivy, "process")
    assert (await rt.observe())["ivy"].hyperhive_rev == "rev-1"
    # A planted symlink at the log path is not followed.
    target = paths.state / "victim"
    target.write_text("")
    (paths.agent_state_dir("ivy") / "harness.log").symlink_to(target)
    with pytest.raises(TemporaryError, match=r"harness\.log"):
        await rt.apply(act(ActionKind.START, ivy))
    assert target.read_text() == ""
    # Nor does a FIFO there hang c0re.
    (paths.agent_state_dir("ivy") / "harness.log").unlink()
    os.mkfifo(paths.agent_state_dir("ivy") / "harness.log")
    with pytest.raises(TemporaryError, match="harness"):
        await rt.apply(act(ActionKind.START, ivy))
    assert (await rt.observe())["ivy"].phase == "stopped"

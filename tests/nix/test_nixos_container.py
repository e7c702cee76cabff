"""The nixos-container runtime against the fake tool: the whole reconcile cycle."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hyperhive.paths import Paths
from hyperhive.reconciler.runtimes import nixos_container
from hyperhive.reconciler.runtimes.base import (
    ActionKind,
    PermanentError,
    RuntimeOptions,
    TemporaryError,
)
from hyperhive.reconciler.runtimes.nixos_container import ToolResult, classify
from tests.polling import until
from tests.runtimes.support import act, desired

from .containers import FAKE, SOURCE, FakeHost, make_host


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHost]:
    h = make_host(tmp_path, monkeypatch)
    yield h
    h.stop_all()


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


async def test_full_cycle_create_start_update_stop_rebuild_destroy(host: FakeHost) -> None:
    rt = host.runtime()
    paths = host.paths
    assert await rt.observe() == {}

    base = desired("alice", config_hash="h1", rev="rev-1")
    d1 = replace(base, spec={**base.spec, "resources": {"memory": "1G", "cpus": 0.5}})
    await rt.apply(act(ActionKind.CREATE, d1))
    flake_dir = paths.flake_dir("alice")
    create = host.calls()[-1]
    assert create == {
        "argv": ["create", "h-alice", "--flake", f"{flake_dir}#container"],
        "cwd": str(flake_dir),
    }
    assert not (flake_dir / ".tmp").exists(), "the build link is read and removed"
    conf = host.conf("alice")
    assert conf["PRIVATE_NETWORK"] == "0"
    assert conf["HOST_ADDRESS"] == conf["LOCAL_ADDRESS"] == ""
    assert conf["FLAKE"] == str(flake_dir)
    assert conf["EXTRA_NSPAWN_FLAGS"] == (
        f'"--bind={paths.agent_socket_dir("alice")}:/run/hive'
        f" --bind={paths.agent_state_dir('alice')}:/state"
        f' --bind={paths.agent_claude_dir("alice")}:/root/.claude"'
    )
    dropin = host.dropin_dir / "container@h-alice.service.d" / "hyperhive.conf"
    assert dropin.read_text().splitlines()[1:] == ["[Service]", "MemoryMax=1G", "CPUQuota=50%"]
    assert read(host.systemctl_log).splitlines() == ["daemon-reload"]
    assert json.loads((flake_dir / "spec.json").read_text())["hyperhiveRev"] == "rev-1"
    observed = (await rt.observe())["alice"]
    assert (observed.phase, observed.config_hash, observed.hyperhive_rev) == (
        "stopped",
        "h1",
        "rev-1",
    )
    assert observed.details["ResourcesEnforced"] is True

    # START: the container runs with its binds and the credential env file.
    await rt.apply(act(ActionKind.START, d1))
    hello = paths.agent_state_dir("alice") / "hello"
    assert await until(lambda: read(hello), "the agent to report") == 'alice sk-"quoted" /state\n'
    assert sorted(read(paths.agent_state_dir("alice") / "mounts").split()) == [
        "/root/.claude",
        "/run/hive",
    ]
    assert not (paths.agent_state_dir("alice") / "has-agents").exists()
    assert (
        json.loads(read(paths.agent_state_dir("alice") / "agent.json"))["hyperhive_rev"] == "rev-1"
    )
    assert (await rt.observe())["alice"].phase == "running"
    first = host.leader("alice")

    # UPDATE of a running container: switch config; the new hash restarts the harness.
    hello.unlink()
    d2 = desired("alice", config_hash="h2", rev="rev-1")
    await rt.apply(act(ActionKind.UPDATE, d2))
    assert ["update", "h-alice", "--flake", f"{flake_dir}#container"] in host.argvs()
    assert await until(lambda: read(hello), "the harness to restart")
    assert host.leader("alice") not in (None, first)
    observed = (await rt.observe())["alice"]
    assert (observed.phase, observed.config_hash) == ("running", "h2")
    # No resources any more: the drop-in goes away.
    assert not dropin.exists()

    # STOP
    await rt.apply(act(ActionKind.STOP, d2))
    assert (await rt.observe())["alice"].phase == "stopped"

    # A stale rev: REBUILD keeps it stopped; a running one restarts on the new build.
    await rt.apply(act(ActionKind.START, d2))
    running = host.leader("alice")
    d3 = desired("alice", config_hash="h2", rev="rev-2")
    await rt.apply(act(ActionKind.REBUILD, d3))
    observed = (await rt.observe())["alice"]
    assert (observed.phase, observed.hyperhive_rev) == ("running", "rev-2")
    assert host.leader("alice") not in (None, running)
    assert json.loads((flake_dir / "spec.json").read_text())["hyperhiveRev"] == "rev-2"

    # DESTROY: container, drop-in and flake go; state and credentials stay.
    await rt.apply(act(ActionKind.DESTROY, "alice"))
    assert await rt.observe() == {}
    assert not (host.conf_dir / "h-alice.conf").exists()
    assert not flake_dir.exists()
    assert hello.exists()
    assert host.leader("alice") is None
    # Every call ran in the agent's flake dir.
    assert {
        c["cwd"] for c in host.calls() if c["argv"][0] != "list" and c["argv"][0] != "status"
    } == {str(flake_dir)}


async def test_hm1nd_binds_proposed_to_agents(host: FakeHost) -> None:
    rt = host.runtime()
    d = desired("hm1nd", role="manager")
    await rt.apply(act(ActionKind.CREATE, d))
    assert f"--bind={host.paths.proposed}:/agents" in host.conf("hm1nd")["EXTRA_NSPAWN_FLAGS"]
    await rt.apply(act(ActionKind.START, d))
    marker = host.paths.agent_state_dir("hm1nd") / "has-agents"
    assert await until(marker.exists, "hm1nd to see /agents")
    await rt.apply(act(ActionKind.STOP, d))


async def test_a_failed_build_is_permanent_and_a_retry_heals(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = host.runtime()
    d = desired("bob")
    monkeypatch.setenv("FAKE_NIXOS_CONTAINER_FAIL", "build")
    with pytest.raises(PermanentError, match="failed to build container from flake"):
        await rt.apply(act(ActionKind.CREATE, d))
    # The real tool leaves the conf behind; the container is not "up to date".
    observed = (await rt.observe())["bob"]
    assert observed.config_hash is None
    monkeypatch.delenv("FAKE_NIXOS_CONTAINER_FAIL")
    await rt.apply(act(ActionKind.CREATE, d))
    # The second create finds the conf ("already exists") and builds with update.
    assert [a[:2] for a in host.argvs() if a[0] in ("create", "update")] == [
        ["create", "h-bob"],
        ["create", "h-bob"],
        ["update", "h-bob"],
    ]
    assert (await rt.observe())["bob"].config_hash == d.config_hash


async def test_start_failure_is_temporary(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = host.runtime()
    d = desired("carol")
    await rt.apply(act(ActionKind.CREATE, d))
    monkeypatch.setenv("FAKE_NIXOS_CONTAINER_FAIL", "start")
    with pytest.raises(TemporaryError, match="failed to start container"):
        await rt.apply(act(ActionKind.START, d))


async def test_events_report_an_exit(host: FakeHost) -> None:
    rt = host.runtime()
    d = desired("dave")
    await rt.apply(act(ActionKind.CREATE, d))
    await rt.apply(act(ActionKind.START, d))
    assert (await rt.observe())["dave"].phase == "running"
    events = rt.events()
    # The container stops on its own (not through the runtime).
    subprocess.run([str(FAKE), "stop", "h-dave"], check=True)
    assert await asyncio.wait_for(anext(events), 10) == "dave"
    await rt.close()


async def test_unplain_state_path_is_refused_before_any_tool_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = make_host(tmp_path, monkeypatch)
    host.paths = Paths.from_home(tmp_path / "hive home")
    rt = host.runtime()
    with pytest.raises(PermanentError, match="letters, digits"):
        await rt.apply(act(ActionKind.CREATE, desired("erin")))
    assert [a for a in host.argvs() if a[0] == "create"] == []


async def test_missing_tool_is_a_clear_permanent_error(tmp_path: Path) -> None:
    rt = nixos_container.NixosContainerRuntime(
        Paths.from_home(tmp_path),
        RuntimeOptions(package_source=SOURCE),
        tool="/nonexistent/nixos-container",
    )
    with pytest.raises(PermanentError, match="needs a NixOS host"):
        await rt.observe()


async def test_missing_package_source_is_permanent(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYPERHIVE_PACKAGE_SOURCE", raising=False)
    rt = host.runtime()
    # What the daemon passes for an installed package: site-packages, not a flake.
    rt.options = RuntimeOptions(package_source=host.paths.state)
    with pytest.raises(PermanentError, match="no hyperhive flake source"):
        await rt.apply(act(ActionKind.CREATE, desired("fay")))
    # The NixOS module's variable wins over it.
    monkeypatch.setenv("HYPERHIVE_PACKAGE_SOURCE", str(host.source))
    await rt.apply(act(ActionKind.CREATE, desired("fay")))
    assert f'"path:{host.source}"' in (host.paths.flake_dir("fay") / "flake.nix").read_text()


def test_fake_keeps_the_real_tools_contract(host: FakeHost, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(FAKE), *args], capture_output=True, text=True, check=False)

    assert run("status", "h-none").stdout == "gone\n"
    assert run("status", "h-none").returncode == 2
    assert "container ‘h-none’ does not exist" in run("start", "h-none").stderr
    assert run("destroy", "h-none").returncode == 0
    assert "is too long" in run("create", "h-123456789x").stderr
    assert "invalid container name" in run("create", "a b").stderr
    assert run("create", "--bogus", "x").returncode == 1
    made = run("create", "h-x", "--system-path", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert made.stderr == "host IP is 10.233.1.1, container IP is 10.233.1.2\n"
    second = run("create", "h-y", "--system-path", str(tmp_path))
    assert "10.233.2.1" in second.stderr
    assert (host.conf_dir / "h-x.conf").read_text() == (
        "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nLOCAL_ADDRESS=10.233.1.2\n"
        "HOST_BRIDGE=\nHOST_PORT=\nAUTO_START=0\n"
    )
    assert "already exists" in run("create", "h-x", "--system-path", str(tmp_path)).stderr
    assert run("list").stdout == "h-x\nh-y\n"
    assert run("show-ip", "h-x").stdout == "10.233.1.2\n"
    assert run("status", "h-x").stdout == "down\n"


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("nixos-container: failed to build container from flake '/s'\n", PermanentError),
        (
            "error: unable to download 'https://cache'\nfailed to build container from flake",
            TemporaryError,
        ),
        ("nixos-container: container name ‘h-x’ is too long", PermanentError),
        ("nixos-container: failed to start container", TemporaryError),
        ("nixos-container: container ‘h-x’ does not exist", TemporaryError),
        ("Unknown option: frob", PermanentError),
    ],
)
def test_classify(stderr: str, kind: type) -> None:
    assert type(classify("x", ToolResult(1, "", stderr))) is kind


def test_make_reads_the_module_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERHIVE_CONTAINER_CONF_DIR", "/etc/containers")
    monkeypatch.setenv("HYPERHIVE_SYSTEMD_DROPIN_DIR", str(tmp_path))
    monkeypatch.setenv("HYPERHIVE_NIXOS_CONTAINER", str(FAKE))
    rt = nixos_container.make(Paths.from_home(tmp_path), RuntimeOptions())
    assert rt.conf_dir == Path("/etc/containers")
    assert rt.dropin_dir == tmp_path
    assert rt.tool == str(FAKE)
    assert rt.name == "nixos-container"


async def test_a_bind_change_restarts_a_running_container(host: FakeHost) -> None:
    """A conf from another c0re (say, before a bind was added) is rewritten; nspawn
    only applies binds at start, so the running container is stopped and started."""
    rt = host.runtime()
    d = desired("gus", config_hash="g1")
    await rt.apply(act(ActionKind.CREATE, d))
    await rt.apply(act(ActionKind.START, d))
    before = host.leader("gus")
    conf = host.conf_dir / "h-gus.conf"
    old = conf.read_text()
    conf.write_text(old.replace(":/root/.claude", ":/root/.claude-old"))
    await rt.apply(act(ActionKind.UPDATE, desired("gus", config_hash="g1")))
    assert conf.read_text() == old
    assert host.leader("gus") not in (None, before)
    assert [a[:2] for a in host.argvs()[-2:]] == [["stop", "h-gus"], ["start", "h-gus"]]

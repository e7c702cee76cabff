"""The bind list and argv every sandbox is built from (no processes here)."""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath

import pytest

from hyperhive.paths import Paths
from hyperhive.reconciler.runtimes import sandbox
from hyperhive.reconciler.runtimes.base import PermanentError, RuntimeOptions

CHECKOUT = Path(__file__).resolve().parents[2]


def test_default_harness_commands_sit_next_to_the_interpreter() -> None:
    options = RuntimeOptions()
    bin_dir = str(Path(sys.executable).parent)
    assert sandbox.harness_command("agent", options) == [f"{bin_dir}/hive-ag3nt", "serve"]
    assert sandbox.harness_command("manager", options) == [f"{bin_dir}/hive-m1nd", "serve"]
    custom = RuntimeOptions(agent_command=["/bin/true", "x"])
    assert sandbox.harness_command("agent", custom) == ["/bin/true", "x"]
    with pytest.raises(PermanentError):
        sandbox.harness_command("agent", RuntimeOptions(agent_command=[]))


def test_env_is_built_from_nothing_and_the_contract_wins() -> None:
    env = sandbox.agent_env(
        "alice", RuntimeOptions(agent_env={"HOME": "/evil", "ANTHROPIC_BASE_URL": "http://x"})
    )
    assert env["HOME"] == "/root" and env["HIVE_AGENT"] == "alice"
    assert env["ANTHROPIC_BASE_URL"] == "http://x"
    assert "HYPERHIVE_HOME" not in env and "USER" not in env


def test_binds_show_sources_only_of_an_editable_install(tmp_path: Path) -> None:
    paths = Paths.from_home(tmp_path)
    sources = sandbox.harness_source_dirs()
    # make test installs the checkout editable, so this case is always the one run.
    assert (CHECKOUT / "hyperhive").resolve() in sources
    assert CHECKOUT.resolve() not in sources
    assert (CHECKOUT / "reconciler").resolve() not in sources
    assert (CHECKOUT / "broker").resolve() not in sources
    targets = {b.target: b for b in sandbox.host_binds() + sandbox.agent_binds(paths, "alice")}
    assert all(not b.writable for b in sandbox.host_binds())
    assert targets[PurePosixPath("/run/hive")].source == paths.agent_socket_dir("alice")
    assert targets[PurePosixPath("/state")].source == paths.agent_state_dir("alice")
    assert targets[PurePosixPath("/root/.claude")].source == paths.agent_claude_dir("alice")
    manager = {b.target: b for b in sandbox.agent_binds(paths, "hm1nd")}
    assert manager[PurePosixPath("/agents")].source == paths.proposed
    assert manager[PurePosixPath("/run/hive")].source == paths.manager_dir


def test_bwrap_argv_carries_no_secrets_and_no_die_with_parent(tmp_path: Path) -> None:
    paths = Paths.from_home(tmp_path)
    links, binds = sandbox.system_links()
    argv = sandbox.bwrap_argv(
        "/usr/bin/bwrap",
        name="alice",
        binds=[*binds, *sandbox.host_binds(), *sandbox.agent_binds(paths, "alice")],
        links=links,
        chdir=sandbox.workdir("alice"),
        command=["/bin/agent"],
    )
    assert "--die-with-parent" not in argv and "--setenv" not in argv
    assert argv[argv.index("--chdir") + 1] == "/state/work"
    assert argv[-2:] == ["--", "/bin/agent"]
    assert argv[argv.index("--cap-drop") : argv.index("--cap-drop") + 2] == ["--cap-drop", "ALL"]
    assert str(paths.run) not in argv and str(paths.state) not in argv


def test_a_hive_inside_a_shown_tree_is_refused(tmp_path: Path) -> None:
    inside = Paths(run=Path(sys.prefix) / "run", state=tmp_path / "state")
    with pytest.raises(PermanentError, match="lies inside"):
        sandbox.check_not_exposed(inside, sandbox.host_binds())
    sandbox.check_not_exposed(Paths.from_home(tmp_path), sandbox.host_binds())


def test_etc_links_out_of_shown_trees_are_bound_at_their_target(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "run" / "resolve").mkdir(parents=True)
    stub = tmp_path / "run" / "resolve" / "stub-resolv.conf"
    stub.write_text("nameserver 127.0.0.53\n")
    (tmp_path / "etc" / "resolv.conf").symlink_to(stub)
    (tmp_path / "etc" / "hosts").write_text("127.0.0.1 localhost\n")  # a plain file
    (tmp_path / "usr").mkdir()
    (tmp_path / "usr" / "zone").write_text("")
    (tmp_path / "etc" / "localtime").symlink_to(tmp_path / "usr" / "zone")  # already shown
    binds = sandbox.etc_link_binds([tmp_path / "usr"], root=tmp_path)
    assert binds == [sandbox.Bind(stub, PurePosixPath(stub), writable=False)]

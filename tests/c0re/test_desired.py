"""The desired-state loader on valid, invalid and hostile commits of a real git repo."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from hyperhive.names import preferred_web_port
from hyperhive.reconciler.desired import (
    MAX_YAML_BYTES,
    DesiredLoader,
    SpecError,
    assign_ports,
    default_manager_yaml,
    parse_agent_yaml,
)
from tests.c0re.desired_repo import agent_yaml, commit, commit_raw_tree, new_repo

BLOB = pygit2.enums.FileMode.BLOB
LINK = pygit2.enums.FileMode.LINK


def load(repo: Path, sha: str, **kw: object) -> object:
    loader = DesiredLoader(pygit2.Repository(str(repo)), "rev")
    return loader.load(sha, port_in_use=lambda p: False, **kw)  # type: ignore[arg-type]


def loader_for(repo: Path) -> DesiredLoader:
    return DesiredLoader(pygit2.Repository(str(repo)), "rev")


def test_valid_agents_load_with_defaults_hash_and_ports(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    sha = commit(
        repo,
        {
            "hm1nd/agent.yaml": default_manager_yaml(),
            "alice/agent.yaml": agent_yaml("alice", model="haiku", packages=["ripgrep"]),
            "alice/agent.nix": b"{ ... }: { }\n",
            "bob/agent.yaml": agent_yaml("bob", state="stopped"),
        },
    )
    st = loader_for(repo).load(sha, port_in_use=lambda p: False)
    assert sorted(st.agents) == ["alice", "bob", "hm1nd"]
    assert not st.invalid and not st.problems
    alice = st.agents["alice"]
    assert alice.commit == sha and alice.hyperhive_rev == "rev"
    assert alice.spec["state"] == "running" and alice.spec["model"] == "haiku"
    assert alice.agent_nix == "{ ... }: { }\n"
    assert alice.web_port == preferred_web_port("alice")
    assert st.agents["hm1nd"].web_port == 8000 and st.agents["hm1nd"].role == "manager"
    assert not st.agents["bob"].wants_running
    # The hash changes with agent.nix alone.
    sha2 = commit(repo, {"alice/agent.nix": b"{ ... }: { x = 1; }\n"})
    st2 = loader_for(repo).load(sha2, port_in_use=lambda p: False)
    assert st2.agents["alice"].config_hash != alice.config_hash
    assert st2.agents["bob"].config_hash == st.agents["bob"].config_hash


def test_reads_the_commit_not_the_work_tree(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    sha = commit(repo, {"alice/agent.yaml": agent_yaml("alice")})
    (repo / "alice" / "agent.yaml").write_text("garbage: [")
    (repo / "zed").mkdir()
    (repo / "zed" / "agent.yaml").write_bytes(agent_yaml("zed"))
    st = loader_for(repo).load(sha, port_in_use=lambda p: False)
    assert list(st.agents) == ["alice"]


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        (b"apiVersion: hyperhive.dev/v1\nkind: Agent\nmetadata: {name: alice}\n", "spec"),
        (agent_yaml("alice", state="paused"), "field spec.state"),
        (agent_yaml("alice", role="manager"), "only hm1nd may be manager"),
        (agent_yaml("bob"), "differs from folder"),
        (agent_yaml("alice", packages=["rip grep"]), "field spec.packages.0"),
        (agent_yaml("alice", packages=["${pkgs.evil}"]), "field spec.packages.0"),
        (agent_yaml("alice", colour="red"), "Additional properties"),
        (agent_yaml("alice", systemPrompt="a\0b"), "NUL"),
        (b"a: &x [1]\nb: *x\n", "aliases are not allowed"),
        (b"spec: [\n", "invalid YAML"),
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * (MAX_YAML_BYTES + 1), "limit"),
    ],
)
def test_invalid_agent_names_file_and_field_and_others_still_load(
    tmp_path: Path, yaml_text: bytes, needle: str
) -> None:
    repo = new_repo(tmp_path / "r")
    sha = commit(repo, {"alice/agent.yaml": yaml_text, "carol/agent.yaml": agent_yaml("carol")})
    st = loader_for(repo).load(sha, port_in_use=lambda p: False)
    assert list(st.agents) == ["carol"]
    bad = st.invalid["alice"]
    assert "alice/agent.yaml" in bad.message
    assert needle in bad.message


def test_hm1nd_must_stay_manager(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    sha = commit(repo, {"hm1nd/agent.yaml": agent_yaml("hm1nd", role="agent")})
    st = loader_for(repo).load(sha, port_in_use=lambda p: False)
    assert "hm1nd must be manager" in st.invalid["hm1nd"].message


def test_missing_agent_yaml(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    sha = commit(repo, {"alice/notes.txt": b"hi"})
    st = loader_for(repo).load(sha, port_in_use=lambda p: False)
    assert st.invalid["alice"].message == "alice/agent.yaml: missing"


def test_hostile_trees(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    sha = commit_raw_tree(
        repo,
        [
            ("README.md", b"stray", BLOB),
            ("evil", b"/etc/passwd", LINK),
            ("alice/agent.yaml", b"../../etc/passwd", LINK),
            ("bob/agent.yaml", agent_yaml("bob"), BLOB),
            ("bob/hack", b"/", LINK),
            ("$(reboot)/agent.yaml", agent_yaml("x"), BLOB),
            ("a;b/agent.yaml", agent_yaml("x"), BLOB),
            ('x"}/agent.yaml', agent_yaml("x"), BLOB),
            ("${x}/agent.yaml", agent_yaml("x"), BLOB),
            ("operator/agent.yaml", agent_yaml("operator"), BLOB),
            ("toolongname/agent.yaml", agent_yaml("toolongname"), BLOB),
            ("carol/agent.yaml", agent_yaml("carol"), BLOB),
            ("dave/agent.yaml", b"x" * (5 * 1024 * 1024), BLOB),
        ],
    )
    st = loader_for(repo).load(sha, port_in_use=lambda p: False)
    assert list(st.agents) == ["carol"]
    assert "symlinks are not allowed" in st.invalid["alice"].message
    assert "bob/hack: symlinks are not allowed" in st.invalid["bob"].message
    assert "limit" in st.invalid["dave"].message or "larger" in st.invalid["dave"].message
    problems = "\n".join(st.problems)
    for bad in ("README.md", "evil", "$(reboot)", "a;b", 'x"}', "${x}", "operator", "toolongname"):
        assert bad in problems, bad
    assert "reserved" in problems


def test_git_refuses_dotdot_entries(tmp_path: Path) -> None:
    repo = pygit2.Repository(str(new_repo(tmp_path / "r")))
    tb = repo.TreeBuilder()
    with pytest.raises((ValueError, pygit2.GitError)):
        tb.insert("..", repo.create_blob(b"x"), BLOB)


def test_parse_rejects_non_mapping_documents() -> None:
    with pytest.raises(SpecError, match="field"):
        parse_agent_yaml("alice", b"- 1\n- 2\n", "alice/agent.yaml")


def test_ports_probe_upward_past_held_and_in_use_and_keep_previous() -> None:
    a = "alice"
    pref = preferred_web_port(a)
    out = assign_ports({a: 1}, {}, in_use=lambda p: p == pref)
    assert out[a] == (pref + 1 if pref < 8999 else 8100)
    # Wrapping at the top of the range.
    out = assign_ports({a: 1}, {}, in_use=lambda p: p >= pref)
    assert out[a] == 8100 if pref > 8100 else out[a] > pref
    # A previous assignment is kept even if the preferred port is free again.
    out = assign_ports({a: 1, "bob": 1}, {a: 8500}, in_use=lambda p: False)
    assert out[a] == 8500
    assert out["bob"] != 8500 and 8100 <= out["bob"] <= 8999
    assert assign_ports({"hm1nd": 1}, {}, in_use=lambda p: True) == {"hm1nd": 8000}


def test_cache_survives_and_follows_new_commits(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "r")
    sha1 = commit(repo, {"alice/agent.yaml": agent_yaml("alice")})
    loader = loader_for(repo)
    first = loader.load(sha1, port_in_use=lambda p: False)
    sha2 = commit(repo, {"alice/agent.yaml": agent_yaml("alice", state="stopped")})
    second = loader.load(sha2, port_in_use=lambda p: False)
    assert first.agents["alice"].wants_running and not second.agents["alice"].wants_running
    assert loader.load(None).agents == {}

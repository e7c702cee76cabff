"""applied/proposed repos: commit_files, history, rollback, destroy, merge into proposed."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from hyperhive.errors import NotFound
from hyperhive.reconciler import gitrepo
from hyperhive.reconciler.desired import default_manager_yaml
from tests.c0re.desired_repo import agent_yaml
from tests.c0re.live_hive import git


def repos(tmp_path: Path) -> tuple[Path, Path]:
    applied, proposed = tmp_path / "applied", tmp_path / "proposed"
    gitrepo.ensure_repos(applied, proposed)
    return applied, proposed


def test_first_start_commits_hm1nd_and_clones_proposed(tmp_path: Path) -> None:
    applied, proposed = repos(tmp_path)
    assert (applied / "hm1nd/agent.yaml").read_bytes() == default_manager_yaml()
    assert (proposed / "hm1nd/agent.yaml").read_bytes() == default_manager_yaml()
    assert git(applied, "status", "--porcelain") == ""
    head = git(applied, "rev-parse", "HEAD").strip()
    assert git(proposed, "rev-parse", "HEAD").strip() == head
    gitrepo.ensure_repos(applied, proposed)  # idempotent
    assert git(applied, "rev-parse", "HEAD").strip() == head


def test_commit_files_updates_index_and_worktree_like_git(tmp_path: Path) -> None:
    applied, _ = repos(tmp_path)
    sha = gitrepo.commit_files(
        applied, {"alice/agent.yaml": agent_yaml("alice")}, "Add alice", {"Approval-Id": "7"}
    )
    assert git(applied, "status", "--porcelain") == ""
    assert (applied / "alice/agent.yaml").read_bytes() == agent_yaml("alice")
    msg = git(applied, "log", "-1", "--format=%B", sha)
    assert msg.startswith("Add alice") and "Approval-Id: 7" in msg
    assert (
        git(applied, "log", "-1", "--format=%(trailers:key=Approval-Id,valueonly)").strip() == "7"
    )
    gitrepo.commit_files(applied, {"alice/agent.yaml": None}, "rm", {})
    assert not (applied / "alice").exists()
    assert git(applied, "status", "--porcelain") == ""
    # No change, no commit.
    head = git(applied, "rev-parse", "HEAD").strip()
    assert gitrepo.commit_files(applied, {"alice/agent.yaml": None}, "again", {}) == head


def test_commit_files_keeps_operator_staged_work_out(tmp_path: Path) -> None:
    applied, _ = repos(tmp_path)
    (applied / "bob").mkdir()
    (applied / "bob/agent.yaml").write_bytes(agent_yaml("bob"))
    git(applied, "add", "bob")
    gitrepo.commit_files(applied, {"alice/agent.yaml": agent_yaml("alice")}, "Add alice", {})
    assert "bob" not in git(applied, "ls-tree", "--name-only", "HEAD")
    assert git(applied, "status", "--porcelain").strip() == "A  bob/agent.yaml"


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", ".git/config", ""])
def test_commit_files_refuses_paths_outside(tmp_path: Path, bad: str) -> None:
    applied, _ = repos(tmp_path)
    with pytest.raises(gitrepo.GitError):
        gitrepo.commit_files(applied, {bad: b"x"}, "evil", {})


def test_history_rollback_destroy(tmp_path: Path) -> None:
    applied, _ = repos(tmp_path)
    v1 = gitrepo.commit_files(applied, {"alice/agent.yaml": agent_yaml("alice")}, "v1", {})
    gitrepo.commit_files(applied, {"bob/agent.yaml": agent_yaml("bob")}, "bob", {})
    gitrepo.commit_files(
        applied,
        {"alice/agent.yaml": agent_yaml("alice", model="opus"), "alice/notes.md": b"n"},
        "v2",
        {},
    )
    hist = gitrepo.history(applied, "alice")
    assert [h.summary for h in hist] == ["v2", "v1"]
    sha = gitrepo.rollback(applied, "alice", v1[:10])
    assert (applied / "alice/agent.yaml").read_bytes() == agent_yaml("alice")
    assert not (applied / "alice/notes.md").exists()
    assert gitrepo.history(applied, "alice")[0].trailers["Operator-Action"] == "rollback"
    assert git(applied, "status", "--porcelain") == ""
    assert sha == git(applied, "rev-parse", "HEAD").strip()
    with pytest.raises(NotFound):
        gitrepo.rollback(applied, "alice", "nonexistent")
    with pytest.raises(NotFound):
        gitrepo.rollback(applied, "carol", v1)
    gitrepo.destroy(applied, "alice")
    assert not (applied / "alice").exists()
    assert gitrepo.history(applied, "alice")[0].trailers["Operator-Action"] == "destroy"
    with pytest.raises(NotFound):
        gitrepo.destroy(applied, "alice")


def test_merge_into_proposed_clean_dirty_conflict(tmp_path: Path) -> None:
    applied, proposed = repos(tmp_path)
    # The manager's own commit in proposed stays; applied's change merges in.
    (proposed / "carol").mkdir()
    (proposed / "carol/agent.yaml").write_bytes(agent_yaml("carol"))
    git(proposed, "add", "carol")
    git(proposed, "commit", "-qm", "manager: add carol")
    manager_commit = git(proposed, "rev-parse", "HEAD").strip()
    gitrepo.commit_files(applied, {"alice/agent.yaml": agent_yaml("alice")}, "alice", {})
    r = gitrepo.merge_into_proposed(applied, proposed)
    assert r.outcome == "merged"
    assert (proposed / "alice/agent.yaml").exists() and (proposed / "carol/agent.yaml").exists()
    git(proposed, "merge-base", "--is-ancestor", manager_commit, "HEAD")
    assert gitrepo.merge_into_proposed(applied, proposed).outcome == "up-to-date"
    # Fast-forward when proposed has nothing of its own.
    gitrepo.commit_files(applied, {"bob/agent.yaml": agent_yaml("bob")}, "bob", {})
    assert gitrepo.merge_into_proposed(applied, proposed).outcome == "merged"
    assert git(proposed, "status", "--porcelain") == ""
    # Dirty work tree: postponed, nothing touched.
    (proposed / "bob/agent.yaml").write_bytes(b"edited")
    gitrepo.commit_files(applied, {"dave/agent.yaml": agent_yaml("dave")}, "dave", {})
    r = gitrepo.merge_into_proposed(applied, proposed)
    assert r.outcome == "postponed" and not (proposed / "dave").exists()
    git(proposed, "checkout", "--", "bob/agent.yaml")
    # Conflict: proposed keeps its own HEAD.
    git(proposed, "pull", "-q", "--no-rebase", str(applied), "main")
    (proposed / "bob/agent.yaml").write_bytes(agent_yaml("bob", model="x"))
    git(proposed, "commit", "-qam", "manager edits bob")
    mine = git(proposed, "rev-parse", "HEAD").strip()
    gitrepo.commit_files(applied, {"bob/agent.yaml": agent_yaml("bob", model="y")}, "op", {})
    r = gitrepo.merge_into_proposed(applied, proposed)
    assert r.outcome == "conflict" and "bob/agent.yaml" in r.message
    assert git(proposed, "rev-parse", "HEAD").strip() == mine
    assert git(proposed, "status", "--porcelain") == ""
    assert pygit2.Repository(str(proposed)).state() == pygit2.enums.RepositoryState.NONE

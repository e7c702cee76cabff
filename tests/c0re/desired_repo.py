"""Real git repos of desired state for the c0re tests (pygit2, in tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pygit2
import yaml

from hyperhive.reconciler.gitrepo import commit_files, signature


def agent_yaml(name: str, **spec: object) -> bytes:
    """A valid agent.yaml with ``spec`` fields on top of the role."""
    doc = {
        "apiVersion": "hyperhive.dev/v1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {"role": "manager" if name == "hm1nd" else "agent", **spec},
    }
    return yaml.safe_dump(doc).encode()


def new_repo(path: Path) -> Path:
    pygit2.init_repository(str(path), bare=False, initial_head="main")
    return path


def commit(repo: Path, changes: dict[str, bytes | None], message: str = "test") -> str:
    return commit_files(repo, changes, message, {})


def commit_raw_tree(repo_path: Path, entries: list[tuple[str, bytes, int]]) -> str:
    """Commit a tree built entry by entry (symlinks, odd names) at the root or one level down."""
    repo = pygit2.Repository(str(repo_path))
    folders: dict[str, list[tuple[str, bytes, int]]] = {}
    root = repo.TreeBuilder()
    for path, data, mode in entries:
        if "/" in path:
            folder, _, rest = path.partition("/")
            folders.setdefault(folder, []).append((rest, data, mode))
        else:
            root.insert(path, repo.create_blob(data), mode)
    for folder, items in folders.items():
        tb = repo.TreeBuilder()
        for name, data, mode in items:
            tb.insert(name, repo.create_blob(data), mode)
        root.insert(folder, tb.write(), pygit2.enums.FileMode.TREE)
    parents = [] if repo.head_is_unborn else [repo.head.target]
    sig = signature()
    oid = repo.create_commit("HEAD", sig, sig, "raw\n", root.write(), parents)
    return str(oid)

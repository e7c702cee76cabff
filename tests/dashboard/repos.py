"""Real applied/proposed repos in tmp_path, made the way c0re makes them."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2
import yaml

from hyperhive.reconciler import approvals, gitrepo
from hyperhive.reconciler.status import MIGRATIONS
from hyperhive.sqlite import connect


def agent_yaml(name: str, **spec: Any) -> bytes:
    body = {"role": "agent", "state": "running", "model": "haiku", **spec}
    doc = {"apiVersion": "hyperhive.dev/v1", "kind": "Agent", "metadata": {"name": name}}
    doc["spec"] = body
    return yaml.safe_dump(doc, sort_keys=False).encode()


@dataclass
class Hive:
    """Two repos, the approvals table, and what the queue told the manager."""

    root: Path
    told: list[str] = field(default_factory=list)
    reconciled: list[list[str]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        gitrepo.ensure_repos(self.applied, self.proposed)
        self.conn: sqlite3.Connection = connect(self.root / "c0re.sqlite", MIGRATIONS)
        self.queue = approvals.ApprovalQueue(
            self.conn,
            self.applied,
            self.proposed,
            notify=self._notify,
            on_applied=self.reconciled.append,
            on_event=lambda agent, kind, message: self.events.append((agent, kind, message)),
        )

    async def _notify(self, body: str, key: str) -> None:
        self.told.append(body)

    @property
    def applied(self) -> Path:
        return self.root / "applied"

    @property
    def proposed(self) -> Path:
        return self.root / "proposed"

    def propose(self, changes: dict[str, bytes | None], message: str = "change") -> str:
        """The manager's commit in proposed."""
        return gitrepo.commit_files(self.proposed, changes, message, {})

    def operator_commit(self, changes: dict[str, bytes | None]) -> str:
        return gitrepo.commit_files(self.applied, changes, "operator edit", {})

    def merge(self) -> None:
        gitrepo.merge_into_proposed(self.applied, self.proposed)

    def propose_symlink(self, path: str, target: str) -> str:
        repo = pygit2.Repository(str(self.proposed))
        head = repo.head.peel(pygit2.Commit)
        index = pygit2.Index()
        index.read_tree(head.tree)
        blob = repo.create_blob(target.encode())
        index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.LINK))
        tree = index.write_tree(repo)
        sig = pygit2.Signature("m", "m@x")
        return str(repo.create_commit("HEAD", sig, sig, "symlink", tree, [head.id]))

    def applied_file(self, path: str) -> bytes | None:
        repo = pygit2.Repository(str(self.applied))
        files = gitrepo.folder_files(repo, str(repo.head.target), path.split("/", maxsplit=1)[0])
        return files.get(path)

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM approvals").fetchone()[0])

"""What hm1nd proposes, read from git: the checks and the diff behind an approval.

The manager commits in the proposed repo; the operator decides on what that
commit would change in applied. This module only *reads* the two repos: it
resolves a sha in proposed, finds its merge-base with applied, computes the
agent folders it touches, enforces the request-time rules (so a refused
request queues nothing), renders the touched folders' diff against applied
HEAD, and at approval time turns an approval into the file changes one
applied commit makes. The queue that records and decides approvals lives in
``approvals.py``; writing applied is its committer's job.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pygit2
import yaml

from hyperhive.errors import BadRequest, Conflict, HiveError
from hyperhive.names import MANAGER_AGENT, validate_agent_name
from hyperhive.reconciler import desired

DIFF_CACHE = 1000
_HEX = frozenset("0123456789abcdef")
MAX_FILE = 1 << 20
MAX_FILES = 200
#: How far back the overwrite check and the crash recovery walk history.
MAX_WALK = 10_000

#: (folder name, agent.yaml bytes) -> the validated ``spec`` mapping; raises HiveError.
Validator = Callable[[str, bytes], Mapping[str, Any]]


class Refused(HiveError):
    """A request the gate will not queue; the message says which rule it broke."""

    code = "refused"


class Proposal(Protocol):
    """What an approval proposes: enough to render its diff and the files it writes."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def agents(self) -> tuple[str, ...]: ...
    @property
    def sha(self) -> str | None: ...
    @property
    def spec(self) -> Mapping[str, Any] | None: ...


def validate_agent_yaml(name: str, raw: bytes) -> Mapping[str, Any]:
    """The core's agent.yaml validation (schema + semantics), as the gate's validator."""
    try:
        _role, spec = desired.parse_agent_yaml(name, raw, f"{name}/agent.yaml")
    except desired.SpecError as e:
        raise BadRequest(e.message) from e
    return spec


def spawn_yaml(name: str, spec: Mapping[str, Any]) -> bytes:
    """The agent.yaml a spawn approval writes (and validates before queueing)."""
    doc = {
        "apiVersion": "hyperhive.dev/v1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": dict(spec),
    }
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: 10x faster
    return yaml.dump(doc, Dumper=dumper, sort_keys=False, allow_unicode=True).encode()


class _UnsafeTree(Exception):
    """A folder holding a symlink, a submodule or more than the size limits allow."""


@dataclass(frozen=True)
class Repos:
    """applied, with proposed's objects reachable through it, and proposed itself.

    The manager's commits live only in proposed; adding proposed's object store as
    an in-memory alternate lets one repository compute the merge-base and read both.
    """

    applied: pygit2.Repository
    proposed: pygit2.Repository
    #: Root trees by commit: parsing a 1,000-agent root tree costs more than a diff.
    roots: dict[pygit2.Oid, pygit2.Tree] = field(default_factory=dict)

    def root(self, commit: pygit2.Commit) -> pygit2.Tree:
        tree = self.roots.get(commit.id)
        if tree is None:
            tree = self.roots[commit.id] = commit.tree
        return tree

    @classmethod
    def open(cls, applied: Path, proposed: Path) -> Repos:
        try:
            a = pygit2.Repository(str(applied))
            p = pygit2.Repository(str(proposed))
        except pygit2.GitError as e:
            raise HiveError(f"cannot open the desired-state repos: {e}") from e
        a.odb.add_disk_alternate(str(Path(p.path) / "objects"))
        return cls(a, p)

    def proposed_commit(self, sha: object) -> pygit2.Commit:
        if not isinstance(sha, str) or not 4 <= len(sha) <= 40 or not set(sha) <= _HEX:
            raise Refused("sha must be a lowercase hex commit id (4-40 characters)")
        try:
            obj = self.proposed.revparse_single(sha)
        except (KeyError, ValueError, pygit2.GitError) as e:
            raise Refused(f"commit {sha} does not exist in proposed") from e
        if obj.type != pygit2.enums.ObjectType.COMMIT:
            raise Refused(f"{sha} is not a commit")
        return self.applied[obj.id].peel(pygit2.Commit)

    def merge_base(self, commit: pygit2.Commit) -> pygit2.Commit | None:
        head = head_commit(self.applied)
        if head is None:
            return None
        base = self.applied.merge_base(commit.id, head.id)
        if base is None:
            raise Refused(f"commit {commit.id} shares no history with applied")
        return self.applied[base].peel(pygit2.Commit)

    def touched_folders(self, commit: pygit2.Commit) -> tuple[str, ...]:
        """Top-level folders that differ between merge-base(sha, applied HEAD) and sha."""
        base = self.merge_base(commit)
        if base is None:
            diff = commit.tree.diff_to_tree(swap=True)
        else:
            diff = base.tree.diff_to_tree(commit.tree)
        folders: set[str] = set()
        for delta in diff.deltas:
            for path in {delta.old_file.path, delta.new_file.path}:
                top, sep, _ = path.partition("/")
                if not sep:
                    raise Refused(f"{path}: files outside agent folders may not change")
                folders.add(top)
        if not folders:
            raise Refused(f"commit {commit.id} changes nothing against applied")
        return tuple(sorted(folders))


def head_commit(repo: pygit2.Repository) -> pygit2.Commit | None:
    if repo.head_is_unborn:
        return None
    commit = repo.head.peel(pygit2.Commit)
    return commit


def _head_has_folder(repo: pygit2.Repository, name: str) -> bool:
    head = head_commit(repo)
    return head is not None and name in head.tree


def _folder_id(commit: pygit2.Commit | None, folder: str) -> pygit2.Oid | None:
    if commit is None or folder not in commit.tree:
        return None
    return commit.tree[folder].id


def _folder_files(repos: Repos, commit: pygit2.Commit, folder: str) -> dict[str, bytes] | None:
    """Every file under ``folder/`` at ``commit`` (None: no such folder)."""
    try:
        top = repos.root(commit)[folder]
    except KeyError:
        return None
    if not isinstance(top, pygit2.Tree):
        raise _UnsafeTree(f"{folder} is a file, not an agent folder")
    out: dict[str, bytes] = {}
    stack: list[tuple[str, pygit2.Tree]] = [("", top)]
    while stack:
        prefix, tree = stack.pop()
        for entry in tree:
            path = f"{prefix}{entry.name}"
            if entry.filemode == pygit2.GIT_FILEMODE_LINK:
                raise _UnsafeTree(f"{folder}/{path} is a symlink; symlinks are not allowed")
            if entry.filemode == pygit2.GIT_FILEMODE_COMMIT:
                raise _UnsafeTree(f"{folder}/{path} is a submodule; not allowed")
            if isinstance(entry, pygit2.Tree):
                stack.append((path + "/", entry))
                continue
            if not isinstance(entry, pygit2.Blob):
                raise _UnsafeTree(f"{folder}/{path} is not a regular file")
            if entry.size > MAX_FILE:
                raise _UnsafeTree(f"{folder}/{path} is larger than {MAX_FILE} bytes")
            out[path] = entry.data
            if len(out) > MAX_FILES:
                raise _UnsafeTree(f"{folder}/ holds more than {MAX_FILES} files")
    return out


def _check_no_overwrite(repos: Repos, commit: pygit2.Commit, folders: tuple[str, ...]) -> None:
    """Refuse when applied changed a folder after the base in a way the manager never saw.

    Applied's version of a folder is fine if it equals the folder at the merge-base
    or at any of the manager's commits since then (e.g. an earlier approval of the
    same line of work): then copying the folder at sha undoes nothing newer.
    """
    head = head_commit(repos.applied)
    base = repos.merge_base(commit)
    for folder in folders:
        current = _folder_id(head, folder)
        known = {_folder_id(base, folder)}
        walker = repos.applied.walk(commit.id, pygit2.enums.SortMode.TOPOLOGICAL)
        if base is not None:
            walker.hide(base.id)
        for i, c in enumerate(walker):
            if i >= MAX_WALK or current in known:
                break
            known.add(_folder_id(c, folder))
        if current not in known:
            where = str(base.id)[:12] if base is not None else "the start"
            raise Conflict(
                f"applied changed {folder}/ after {where}, the base of the proposed commit; "
                "not overwriting it (merge applied into proposed and ask again)"
            )


def _unified_diff(
    repos: Repos, folders: tuple[str, ...], targets: Mapping[str, dict[str, bytes] | None]
) -> str:
    head = head_commit(repos.applied)
    chunks: list[str] = []
    for folder in folders:
        old = (_folder_files(repos, head, folder) if head is not None else None) or {}
        new = targets.get(folder) or {}
        for path in sorted(set(old) | set(new)):
            a, b = old.get(path), new.get(path)
            if a == b:
                continue
            name = f"{folder}/{path}"
            try:
                a_lines = (a or b"").decode().splitlines(keepends=True)
                b_lines = (b or b"").decode().splitlines(keepends=True)
            except UnicodeDecodeError:
                chunks.append(f"Binary file {name} differs\n")
                continue
            chunks.extend(
                difflib.unified_diff(
                    a_lines,
                    b_lines,
                    fromfile=f"a/{name}" if a is not None else "/dev/null",
                    tofile=f"b/{name}" if b is not None else "/dev/null",
                )
            )
    return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)


class Proposals:
    """The proposed repo as seen from applied: request checks, diffs, apply-time changes."""

    def __init__(
        self, applied: Path, proposed: Path, *, validate: Validator = validate_agent_yaml
    ) -> None:
        self.applied = applied
        self.proposed = proposed
        self.validate = validate
        self._diffs: dict[tuple[int, str], str] = {}

    def open(self) -> Repos:
        return Repos.open(self.applied, self.proposed)

    # --- request-time rules ------------------------------------------------------
    def check_commit(self, sha: object) -> tuple[str, tuple[str, ...]]:
        """The full sha and its touched folders, once every rule holds; else Refused."""
        repos = self.open()
        commit = repos.proposed_commit(sha)
        touched = repos.touched_folders(commit)
        for folder in touched:
            self._check_folder(repos, commit, folder)
        return str(commit.id), touched

    def check_spawn_name(self, name: object, spec: object) -> tuple[str, Mapping[str, Any]]:
        """A valid name, free in applied and in proposed, and a spec that is a mapping."""
        try:
            agent = validate_agent_name(name)
        except HiveError as e:
            raise Refused(e.message) from e
        if not isinstance(spec, Mapping):
            raise Refused("spec must be a JSON object (the spec: mapping of agent.yaml)")
        repos = self.open()
        for label, repo in (("applied", repos.applied), ("proposed", repos.proposed)):
            if _head_has_folder(repo, agent):
                raise Refused(f"an agent named {agent!r} already exists in {label}")
        return agent, spec

    def check_spawn_spec(self, agent: str, spec: Mapping[str, Any]) -> None:
        """The agent.yaml a spawn would write is valid and asks for role ``agent``."""
        validated = self._validated(agent, spawn_yaml(agent, spec))
        if validated.get("role", "agent") != "agent":
            raise Refused("a spawned agent must have role 'agent'")

    def _check_folder(self, repos: Repos, commit: pygit2.Commit, folder: str) -> None:
        try:
            validate_agent_name(folder)
        except HiveError as e:
            raise Refused(f"{folder}/: {e.message}") from e
        try:
            files = _folder_files(repos, commit, folder)
        except _UnsafeTree as e:
            raise Refused(str(e)) from e
        if files is None:
            if folder == MANAGER_AGENT:
                raise Refused("the commit deletes hm1nd; the manager may not delete itself")
            return
        data = files.get("agent.yaml")
        if data is None:
            raise Refused(f"{folder}/agent.yaml is missing (every agent folder needs one)")
        role = self._validated(folder, data).get("role", "agent")
        if folder == MANAGER_AGENT and role != "manager":
            raise Refused("hm1nd may not change its own role")
        if folder != MANAGER_AGENT and role == "manager":
            raise Refused(f"{folder}: role 'manager' is reserved for hm1nd")
        top = repos.root(commit)[folder]
        if isinstance(top, pygit2.Tree):
            try:  # the loader's own folder rules (agent.nix, sizes), so what is approved loads
                desired.load_folder(repos.applied, folder, top)
            except desired.SpecError as e:
                raise Refused(e.message) from e

    def _validated(self, folder: str, data: bytes) -> Mapping[str, Any]:
        try:
            return self.validate(folder, data)
        except HiveError as e:
            raise Refused(f"{folder}/agent.yaml is invalid: {e.message}") from e

    # --- showing a proposal --------------------------------------------------------
    def shown(self, p: Proposal, repos: Repos) -> tuple[str, str | None]:
        """The diff and the manager's commit message (its reason), as the operator sees them."""
        message = None
        try:
            diff = self.diff(p, repos)
            if p.sha is not None:
                message = repos.proposed_commit(p.sha).message.strip()[:4000]
        except HiveError as e:
            diff = f"(no diff: {e.message})"
        return diff, message

    def diff(self, p: Proposal, repos: Repos | None = None) -> str:
        """The unified diff of the proposal's folders against applied HEAD.

        A pure function of the approval and applied HEAD, so it is cached on
        both: a page showing a hundred pending approvals renders each diff once
        per applied commit, not once per page view.
        """
        repos = repos or self.open()
        head = head_commit(repos.applied)
        key = (p.id, str(head.id) if head is not None else "")
        cached = self._diffs.get(key)
        if cached is None:
            cached = _unified_diff(repos, p.agents, self._target_files(repos, p))
            if len(self._diffs) >= DIFF_CACHE:
                self._diffs.clear()
            self._diffs[key] = cached
        return cached

    # --- applying a proposal -------------------------------------------------------
    def changes(self, repos: Repos, p: Proposal) -> dict[str, bytes | None]:
        """The applied commit's file changes; Conflict if applied moved on unseen."""
        head = head_commit(repos.applied)
        if p.kind == "spawn":
            if _head_has_folder(repos.applied, p.agents[0]):
                raise Conflict(f"{p.agents[0]}/ appeared in applied meanwhile; not overwritten")
        else:
            commit = repos.proposed_commit(p.sha)
            _check_no_overwrite(repos, commit, p.agents)
        changes: dict[str, bytes | None] = {}
        for folder, files in self._target_files(repos, p).items():
            old = _folder_files(repos, head, folder) if head is not None else None
            for path in old or {}:
                changes[f"{folder}/{path}"] = None
            for path, data in (files or {}).items():
                changes[f"{folder}/{path}"] = data
        return changes

    def _target_files(self, repos: Repos, p: Proposal) -> dict[str, dict[str, bytes] | None]:
        if p.kind == "spawn":
            return {p.agents[0]: {"agent.yaml": spawn_yaml(p.agents[0], p.spec or {})}}
        commit = repos.proposed_commit(p.sha)
        return {f: _folder_files(repos, commit, f) for f in p.agents}

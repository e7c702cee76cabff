"""The approval gate: the manager proposes, the operator decides (DESIGN §5).

hm1nd edits agents in the proposed repo and asks; nothing it commits there
runs until the operator approves, and then exactly the agent folders its
commit touched are copied into applied as one commit carrying the trailers
``Approval-Id: N`` and ``Proposed-Commit: <sha>``. Those trailers make the
approval crash-safe: on start an ``approved`` row whose trailer is already in
applied is marked applied, one whose trailer is missing is applied again.

Everything is checked when the manager asks (so a refused request queues
nothing) and the conflict rule is checked again when the operator approves,
because applied may have moved on in between.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2
import yaml
from hyperhive.reconciler import desired, gitrepo

from hyperhive.clock import now_rfc3339
from hyperhive.errors import BadRequest, Conflict, HiveError, NotFound
from hyperhive.names import MANAGER_AGENT, MANAGER_MAILBOX, validate_agent_name

log = logging.getLogger(__name__)

#: Set to this value, c0re kills itself right after the applied commit and before
#: the status update: the crash test proves the restart heals it exactly once.
FAULT_ENV = "HYPERHIVE_FAULT"
FAULT_AFTER_COMMIT = "approval-after-commit"
MAX_NOTE = 2000
DIFF_CACHE = 1000

#: (folder name, agent.yaml bytes) -> the validated ``spec`` mapping; raises HiveError.
Validator = Callable[[str, bytes], Mapping[str, Any]]
#: (repo, {path: bytes or None to delete}, message, trailers) -> new commit sha.
Committer = Callable[[Path, Mapping[str, bytes | None], str, Mapping[str, str]], str]
#: (body, idempotency key) -> posted to ``manager`` from ``system``.
Notifier = Callable[[str, str], Awaitable[None]]


class Refused(HiveError):
    """A request the gate will not queue; the message says which rule it broke."""

    code = "refused"


@dataclass(frozen=True)
class Approval:
    id: int
    kind: str
    agents: tuple[str, ...]
    sha: str | None
    spec: Mapping[str, Any] | None
    requested_at: str
    status: str
    resolved_at: str | None
    note: str
    applied_commit: str | None = None
    diff: str | None = field(default=None, compare=False)
    #: The manager's commit message: its reason, shown beside the diff.
    message: str | None = field(default=None, compare=False)

    @property
    def agent(self) -> str:
        return ",".join(self.agents)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "agent": self.agent,
            "agents": list(self.agents),
            "sha": self.sha,
            "spec": self.spec,
            "requested_at": self.requested_at,
            "status": self.status,
            "resolved_at": self.resolved_at,
            "note": self.note,
            "applied_commit": self.applied_commit,
        }
        if self.diff is not None:
            out["diff"] = self.diff
        if self.message is not None:
            out["message"] = self.message
        return out


def _row(r: sqlite3.Row | tuple[Any, ...]) -> Approval:
    id_, kind, agent, sha, spec, requested_at, status, resolved_at, note, applied = r
    return Approval(
        id=id_,
        kind=kind,
        agents=tuple(agent.split(",")) if agent else (),
        sha=sha,
        spec=json.loads(spec) if spec else None,
        requested_at=requested_at,
        status=status,
        resolved_at=resolved_at,
        note=note,
        applied_commit=applied,
    )


_COLUMNS = "id, kind, agent, sha, spec, requested_at, status, resolved_at, note, applied_commit"


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


# --- reading the two repos ---------------------------------------------------------
_HEX = frozenset("0123456789abcdef")
MAX_FILE = 1 << 20
MAX_FILES = 200
#: How far back the overwrite check and the crash recovery walk history.
MAX_WALK = 10_000


class _UnsafeTree(Exception):
    """A folder holding a symlink, a submodule or more than the size limits allow."""


@dataclass(frozen=True)
class _Repos:
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
    def open(cls, applied: Path, proposed: Path) -> _Repos:
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
        head = _head_commit(self.applied)
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


def _head_commit(repo: pygit2.Repository) -> pygit2.Commit | None:
    if repo.head_is_unborn:
        return None
    commit = repo.head.peel(pygit2.Commit)
    return commit


def _head_has_folder(repo: pygit2.Repository, name: str) -> bool:
    head = _head_commit(repo)
    return head is not None and name in head.tree


def _folder_id(commit: pygit2.Commit | None, folder: str) -> pygit2.Oid | None:
    if commit is None or folder not in commit.tree:
        return None
    return commit.tree[folder].id


def _folder_files(repos: _Repos, commit: pygit2.Commit, folder: str) -> dict[str, bytes] | None:
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


def _check_no_overwrite(repos: _Repos, commit: pygit2.Commit, folders: tuple[str, ...]) -> None:
    """Refuse when applied changed a folder after the base in a way the manager never saw.

    Applied's version of a folder is fine if it equals the folder at the merge-base
    or at any of the manager's commits since then (e.g. an earlier approval of the
    same line of work): then copying the folder at sha undoes nothing newer.
    """
    head = _head_commit(repos.applied)
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


def _approval_trailers(applied: Path) -> dict[int, tuple[str, str]]:
    """``Approval-Id`` → (applied commit, its ``Proposed-Commit``), for applied's history."""
    repo = pygit2.Repository(str(applied))
    head = _head_commit(repo)
    out: dict[int, tuple[str, str]] = {}
    if head is None:
        return out
    for i, c in enumerate(repo.walk(head.id)):
        if i >= MAX_WALK:
            break
        trailers = c.message_trailers
        value = trailers.get("Approval-Id", "")
        if value.isdigit():
            out.setdefault(int(value), (str(c.id), trailers.get("Proposed-Commit", "")))
    return out


def _unified_diff(
    repos: _Repos, folders: tuple[str, ...], targets: Mapping[str, dict[str, bytes] | None]
) -> str:
    head = _head_commit(repos.applied)
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


class ApprovalQueue:
    """The queue in c0re.sqlite plus the two repos it moves changes between."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        applied: Path,
        proposed: Path,
        *,
        validate: Validator = validate_agent_yaml,
        commit: Committer = gitrepo.commit_files,
        notify: Notifier | None = None,
        on_applied: Callable[[list[str]], None] | None = None,
        on_change: Callable[[], None] | None = None,
        on_event: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.conn = conn
        self.applied = applied
        self.proposed = proposed
        self.validate = validate
        self.commit = commit
        self.notify = notify
        self.on_applied = on_applied
        self.on_change = on_change
        #: (agent, kind, message) into c0re's event log, so an agent's page shows its approvals.
        self.on_event = on_event
        self._diffs: dict[tuple[int, str], str] = {}

    # --- requests (the manager, over c0re.sock) -------------------------------
    def request_apply_commit(self, sha: object) -> int:
        """Validate the manager's commit and queue it; Refused names the broken rule."""
        repos = _Repos.open(self.applied, self.proposed)
        commit = repos.proposed_commit(sha)
        touched = repos.touched_folders(commit)
        for folder in touched:
            self._check_folder(repos, commit, folder)
        return self._insert("apply_commit", touched, str(commit.id), None)

    def request_spawn(self, name: object, spec: object) -> int:
        """Queue a new agent; its name must be free in applied and in proposed."""
        try:
            agent = validate_agent_name(name)
        except HiveError as e:
            raise Refused(e.message) from e
        if not isinstance(spec, Mapping):
            raise Refused("spec must be a JSON object (the spec: mapping of agent.yaml)")
        repos = _Repos.open(self.applied, self.proposed)
        for label, repo in (("applied", repos.applied), ("proposed", repos.proposed)):
            if _head_has_folder(repo, agent):
                raise Refused(f"an agent named {agent!r} already exists in {label}")
        pending = self.conn.execute(
            "SELECT id FROM approvals WHERE kind = 'spawn' AND agent = ? AND status = 'pending'",
            (agent,),
        ).fetchone()
        if pending is not None:
            raise Refused(f"a spawn of {agent!r} is already pending as approval {pending[0]}")
        validated = self._validated(agent, spawn_yaml(agent, spec))
        if validated.get("role", "agent") != "agent":
            raise Refused("a spawned agent must have role 'agent'")
        return self._insert("spawn", (agent,), None, spec)

    def _check_folder(self, repos: _Repos, commit: pygit2.Commit, folder: str) -> None:
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

    def _insert(
        self, kind: str, agents: tuple[str, ...], sha: str | None, spec: object | None
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO approvals (kind, agent, sha, spec, requested_at) VALUES (?, ?, ?, ?, ?)",
            (
                kind,
                ",".join(agents),
                sha,
                json.dumps(spec) if spec is not None else None,
                now_rfc3339(),
            ),
        )
        approval_id = int(cur.lastrowid or 0)
        self._record(agents, "approval_requested", f"approval {approval_id}: {kind} requested")
        self._changed()
        return approval_id

    # --- reading ----------------------------------------------------------------
    def get(self, approval_id: object, *, with_diff: bool = False) -> Approval:
        if isinstance(approval_id, bool) or not isinstance(approval_id, int):
            raise BadRequest("approval id must be an integer")
        r = self.conn.execute(
            f"SELECT {_COLUMNS} FROM approvals WHERE id = ?",  # noqa: S608 - constant columns
            (approval_id,),
        ).fetchone()
        if r is None:
            raise NotFound(f"no approval {approval_id}")
        a = _row(r)
        return self._with_diff(a) if with_diff else a

    def listing(
        self, *, pending_only: bool = False, limit: int = 200, with_diff: bool = False
    ) -> list[Approval]:
        """Pending first (oldest first), then resolved ones, newest first."""
        where = "WHERE status IN ('pending', 'approved')" if pending_only else ""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM approvals {where} "  # noqa: S608 - constant SQL
            "ORDER BY status NOT IN ('pending', 'approved'), "
            "CASE WHEN status IN ('pending', 'approved') THEN id ELSE -id END LIMIT ?",
            (limit,),
        ).fetchall()
        out = [_row(r) for r in rows]
        if not with_diff:
            return out
        repos = _Repos.open(self.applied, self.proposed)
        return [self._with_diff(a, repos) for a in out]

    def _with_diff(self, a: Approval, repos: _Repos | None = None) -> Approval:
        repos = repos or _Repos.open(self.applied, self.proposed)
        message = None
        try:
            diff = self.diff(a, repos)
            if a.sha is not None:
                message = repos.proposed_commit(a.sha).message.strip()[:4000]
        except HiveError as e:
            diff = f"(no diff: {e.message})"
        return Approval(**{**a.__dict__, "diff": diff, "message": message})

    def diff(self, a: Approval, repos: _Repos | None = None) -> str:
        """The unified diff of the approval's folders against applied HEAD.

        A pure function of the approval and applied HEAD, so it is cached on
        both: a page showing a hundred pending approvals renders each diff once
        per applied commit, not once per page view.
        """
        repos = repos or _Repos.open(self.applied, self.proposed)
        head = _head_commit(repos.applied)
        key = (a.id, str(head.id) if head is not None else "")
        cached = self._diffs.get(key)
        if cached is None:
            cached = _unified_diff(repos, a.agents, self._target_files(repos, a))
            if len(self._diffs) >= DIFF_CACHE:
                self._diffs.clear()
            self._diffs[key] = cached
        return cached

    def _target_files(self, repos: _Repos, a: Approval) -> dict[str, dict[str, bytes] | None]:
        if a.kind == "spawn":
            return {a.agents[0]: {"agent.yaml": spawn_yaml(a.agents[0], a.spec or {})}}
        commit = repos.proposed_commit(a.sha)
        return {f: _folder_files(repos, commit, f) for f in a.agents}

    # --- decisions (the operator) ----------------------------------------------
    async def approve(self, approval_id: object) -> Approval:
        a = self.get(approval_id)
        if a.status != "pending":
            raise Conflict(f"approval {a.id} is {a.status}, not pending")
        cur = self.conn.execute(
            "UPDATE approvals SET status = 'approved' WHERE id = ? AND status = 'pending'", (a.id,)
        )
        if cur.rowcount != 1:
            raise Conflict(f"approval {a.id} was decided meanwhile")
        return await self._apply(self.get(a.id))

    async def deny(self, approval_id: object, note: object = "") -> Approval:
        if not isinstance(note, str) or len(note) > MAX_NOTE or "\x00" in note:
            raise BadRequest(f"note must be a string of at most {MAX_NOTE} characters")
        a = self.get(approval_id)
        cur = self.conn.execute(
            "UPDATE approvals SET status = 'denied', resolved_at = ?, note = ? "
            "WHERE id = ? AND status = 'pending'",
            (now_rfc3339(), note, a.id),
        )
        if cur.rowcount != 1:
            raise Conflict(f"approval {a.id} is {a.status}, not pending")
        self._record(a.agents, "approval_denied", f"approval {a.id}: denied {note}".strip())
        self._changed()
        a = self.get(a.id)
        await self._tell(a)
        return a

    async def recover(self) -> list[Approval]:
        """Heal a crash between the applied commit and the status update (exactly once)."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM approvals WHERE status = 'approved' ORDER BY id"  # noqa: S608
        ).fetchall()
        if not rows:
            return []
        done = _approval_trailers(self.applied)
        out = []
        for r in rows:
            a = _row(r)
            commit, proposed = done.get(a.id, ("", ""))
            # The sha must match too: a trailer left by an older c0re.sqlite is not this one.
            if commit and proposed == (a.sha or ""):
                log.info("approval %d was committed before a crash; marking it applied", a.id)
                out.append(await self._finish(a, "applied", "", commit))
            else:
                log.info("approval %d was approved but not committed; applying it now", a.id)
                out.append(await self._apply(a))
        return out

    async def _apply(self, a: Approval) -> Approval:
        try:
            repos = _Repos.open(self.applied, self.proposed)
            changes = self._changes(repos, a)
            message, trailers = self._message(a)
            sha = self.commit(self.applied, changes, message, trailers)
        except HiveError as e:
            return await self._finish(a, "failed", e.message, None)
        except Exception as e:  # a git failure must not leave the row approved forever
            log.exception("applying approval %d failed", a.id)
            return await self._finish(a, "failed", f"internal error: {e}", None)
        if os.environ.get(FAULT_ENV) == FAULT_AFTER_COMMIT:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.on_applied is not None:  # reconcile first; telling hm1nd can wait a moment
            self.on_applied(list(a.agents))
        return await self._finish(a, "applied", "", sha)

    def _changes(self, repos: _Repos, a: Approval) -> dict[str, bytes | None]:
        head = _head_commit(repos.applied)
        if a.kind == "spawn":
            if _head_has_folder(repos.applied, a.agents[0]):
                raise Conflict(f"{a.agents[0]}/ appeared in applied meanwhile; not overwritten")
        else:
            commit = repos.proposed_commit(a.sha)
            _check_no_overwrite(repos, commit, a.agents)
        changes: dict[str, bytes | None] = {}
        for folder, files in self._target_files(repos, a).items():
            old = _folder_files(repos, head, folder) if head is not None else None
            for path in old or {}:
                changes[f"{folder}/{path}"] = None
            for path, data in (files or {}).items():
                changes[f"{folder}/{path}"] = data
        return changes

    def _message(self, a: Approval) -> tuple[str, dict[str, str]]:
        if a.kind == "spawn":
            subject = f"Spawn {a.agents[0]} (approval {a.id})"
            return subject, {"Approval-Id": str(a.id)}
        sha = a.sha or ""
        subject = f"Apply {a.agent} from proposed {sha[:12]} (approval {a.id})"
        return subject, {"Approval-Id": str(a.id), "Proposed-Commit": sha}

    async def _finish(
        self, a: Approval, status: str, note: str, applied_commit: str | None
    ) -> Approval:
        self.conn.execute(
            "UPDATE approvals SET status = ?, resolved_at = ?, note = ?, applied_commit = ? "
            "WHERE id = ?",
            (status, now_rfc3339(), note, applied_commit, a.id),
        )
        self._record(a.agents, f"approval_{status}", f"approval {a.id}: {status} {note}".strip())
        self._changed()
        done = self.get(a.id)
        await self._tell(done)
        return done

    async def _tell(self, a: Approval) -> None:
        """Post the resolution to the manager; a broker outage must not undo a decision."""
        if self.notify is None:
            return
        what = f"spawn of {a.agent}" if a.kind == "spawn" else f"apply_commit {a.sha} ({a.agent})"
        body = f"approval {a.id} ({what}): {a.status}"
        if a.status == "applied" and a.applied_commit:
            body += f" as applied commit {a.applied_commit}"
        if a.note:
            body += f" — {a.note}"
        try:
            await self.notify(body, f"approval-{a.id}-{a.status}")
        except Exception:
            log.warning("could not tell %s about approval %d", MANAGER_MAILBOX, a.id, exc_info=True)

    def _record(self, agents: tuple[str, ...], kind: str, message: str) -> None:
        if self.on_event is not None:
            for agent in agents:
                self.on_event(agent, kind, message)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


__all__ = ["Approval", "ApprovalQueue", "Refused", "spawn_yaml"]

"""The approval gate: the manager proposes, the operator decides (DESIGN §5).

hm1nd edits agents in the proposed repo and asks; nothing it commits there
runs until the operator approves, and then exactly the agent folders its
commit touched are copied into applied as one commit carrying the trailers
``Approval-Id: N`` and ``Proposed-Commit: <sha>``. Those trailers make the
approval crash-safe: on start an ``approved`` row whose trailer is already in
applied is marked applied, one whose trailer is missing is applied again.

Everything is checked when the manager asks (so a refused request queues
nothing) and the conflict rule is checked again when the operator approves,
because applied may have moved on in between. Those checks, the diffs and
the files an approval writes are read from git by ``proposals.py``; this
module is the queue: its rows, their transitions (pending → approved →
applied, or denied, or failed), crash recovery and telling the manager.
"""

from __future__ import annotations

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

from hyperhive.clock import now_rfc3339
from hyperhive.errors import BadRequest, Conflict, HiveError, NotFound
from hyperhive.names import MANAGER_MAILBOX
from hyperhive.reconciler import gitrepo
from hyperhive.reconciler.proposals import (
    MAX_WALK,
    Proposals,
    Refused,
    Repos,
    Validator,
    head_commit,
    spawn_yaml,
    validate_agent_yaml,
)

log = logging.getLogger(__name__)

#: Set to this value, c0re kills itself right after the applied commit and before
#: the status update: the crash test proves the restart heals it exactly once.
FAULT_ENV = "HYPERHIVE_FAULT"
FAULT_AFTER_COMMIT = "approval-after-commit"
MAX_NOTE = 2000

#: (repo, {path: bytes or None to delete}, message, trailers) -> new commit sha.
Committer = Callable[[Path, Mapping[str, bytes | None], str, Mapping[str, str]], str]
#: (body, idempotency key) -> posted to ``manager`` from ``system``.
Notifier = Callable[[str, str], Awaitable[None]]


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


def _approval_trailers(applied: Path) -> dict[int, tuple[str, str]]:
    """``Approval-Id`` → (applied commit, its ``Proposed-Commit``), for applied's history."""
    repo = pygit2.Repository(str(applied))
    head = head_commit(repo)
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
        #: The read-only side: request rules, diffs and the files an approval writes.
        self.proposals = Proposals(applied, proposed, validate=validate)
        self.commit = commit
        self.notify = notify
        self.on_applied = on_applied
        self.on_change = on_change
        #: (agent, kind, message) into c0re's event log, so an agent's page shows its approvals.
        self.on_event = on_event

    # --- requests (the manager, over c0re.sock) -------------------------------
    def request_apply_commit(self, sha: object) -> int:
        """Validate the manager's commit and queue it; Refused names the broken rule."""
        full_sha, touched = self.proposals.check_commit(sha)
        return self._insert("apply_commit", touched, full_sha, None)

    def request_spawn(self, name: object, spec: object) -> int:
        """Queue a new agent; its name must be free in applied and in proposed."""
        agent, mapping = self.proposals.check_spawn_name(name, spec)
        pending = self.conn.execute(
            "SELECT id FROM approvals WHERE kind = 'spawn' AND agent = ? AND status = 'pending'",
            (agent,),
        ).fetchone()
        if pending is not None:
            raise Refused(f"a spawn of {agent!r} is already pending as approval {pending[0]}")
        self.proposals.check_spawn_spec(agent, mapping)
        return self._insert("spawn", (agent,), None, mapping)

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
        repos = self.proposals.open()
        return [self._with_diff(a, repos) for a in out]

    def _with_diff(self, a: Approval, repos: Repos | None = None) -> Approval:
        diff, message = self.proposals.shown(a, repos or self.proposals.open())
        return Approval(**{**a.__dict__, "diff": diff, "message": message})

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
            repos = self.proposals.open()
            changes = self.proposals.changes(repos, a)
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


__all__ = ["Approval", "ApprovalQueue", "Refused", "spawn_yaml", "validate_agent_yaml"]

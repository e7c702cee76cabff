"""What c0re knows about each agent, in ``STATE/c0re.sqlite``: status rows and an event log.

A reconcile pass writes one agent's row once, at its end, as conditions
(``Ready``, ``Reconciled``, ``UpToDate``, ``LoggedIn``) after Kubernetes'
convention: a condition's ``last_transition`` changes only when its status
does. The rows are the record shown by ``status``; nothing in them decides
the next pass except the operator's ``suspended`` flag and the web ports
already handed out (so an agent's UI does not move).

Other modules add tables by appending to :data:`MIGRATIONS` (approvals).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hyperhive import sqlite
from hyperhive.clock import now_rfc3339

MIGRATIONS: list[str] = [
    """
    CREATE TABLE agents (
      name TEXT PRIMARY KEY,
      applied_commit TEXT NOT NULL DEFAULT '',
      phase TEXT NOT NULL DEFAULT 'pending',
      conditions TEXT NOT NULL DEFAULT '[]',
      last_error TEXT NOT NULL DEFAULT '',
      web_port INTEGER,
      suspended INTEGER NOT NULL DEFAULT 0,
      report TEXT NOT NULL DEFAULT '{}',
      updated_at TEXT NOT NULL
    );
    CREATE TABLE events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      at TEXT NOT NULL,
      agent TEXT NOT NULL DEFAULT '',
      kind TEXT NOT NULL,
      message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_agent ON events (agent, id);
    CREATE TABLE repo (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: the approval queue (reconciler/approvals.py).
    """
    CREATE TABLE approvals (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      kind TEXT NOT NULL CHECK (kind IN ('apply_commit', 'spawn')),
      agent TEXT NOT NULL,
      sha TEXT,
      spec TEXT,
      requested_at TEXT NOT NULL,
      status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'approved', 'applied', 'denied', 'failed')),
      resolved_at TEXT,
      note TEXT NOT NULL DEFAULT '',
      applied_commit TEXT
    );
    CREATE INDEX approvals_by_status ON approvals (status, id);
    """,
]

CONDITION_TYPES = ("Ready", "Reconciled", "UpToDate", "LoggedIn", "Sandboxed", "ResourcesEnforced")
EVENTS_KEPT = 10_000


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    last_transition: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "last_transition": self.last_transition,
        }


@dataclass(frozen=True)
class AgentStatus:
    name: str
    applied_commit: str = ""
    phase: str = "pending"
    conditions: tuple[Condition, ...] = ()
    last_error: str = ""
    web_port: int | None = None
    suspended: bool = False
    #: The harness's own report (status.json): turns, busy, cost, tokens.
    report: Mapping[str, Any] = field(default_factory=dict)
    updated_at: str = ""

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "applied_commit": self.applied_commit,
            "conditions": [c.to_json() for c in self.conditions],
            "web_port": self.web_port,
            "last_error": self.last_error,
            "suspended": self.suspended,
            **{k: v for k, v in self.report.items() if k != "logged_in"},
            "updated_at": self.updated_at,
        }


def merge_conditions(
    old: Iterable[Condition], new: Iterable[Condition], now: str
) -> tuple[Condition, ...]:
    """New conditions, keeping ``last_transition`` when the status did not change.

    Conditions not mentioned in ``new`` (e.g. LoggedIn, written by the status
    file watcher) are kept as they were.
    """
    before = {c.type: c for c in old}
    out = dict(before)
    for c in new:
        prev = before.get(c.type)
        stamp = prev.last_transition if prev is not None and prev.status == c.status else now
        out[c.type] = replace(c, last_transition=stamp)
    return tuple(out[t] for t in sorted(out, key=_condition_order))


def _condition_order(t: str) -> tuple[int, str]:
    return (CONDITION_TYPES.index(t) if t in CONDITION_TYPES else len(CONDITION_TYPES), t)


@dataclass(frozen=True)
class Event:
    agent: str
    kind: str
    message: str = ""


class StatusStore:
    """The one writer of c0re.sqlite's status tables; rows are cached for cheap no-op passes."""

    def __init__(self, path: Path) -> None:
        self.db: sqlite3.Connection = sqlite.connect(path, MIGRATIONS)
        self._rows: dict[str, AgentStatus] = {r.name: r for r in self._read_all()}
        #: Called with an agent name ('' for the hive) after each change (dashboard SSE).
        self.listeners: list[Callable[[str], None]] = []

    def close(self) -> None:
        self.db.close()

    def _read_all(self) -> list[AgentStatus]:
        rows = self.db.execute(
            "SELECT name, applied_commit, phase, conditions, last_error, web_port,"
            " suspended, report, updated_at FROM agents ORDER BY name"
        ).fetchall()
        out = []
        for r in rows:
            conds = tuple(Condition(**c) for c in json.loads(r[3]))
            out.append(
                AgentStatus(r[0], r[1], r[2], conds, r[4], r[5], bool(r[6]), json.loads(r[7]), r[8])
            )
        return out

    # --- reads -----------------------------------------------------------------
    def get(self, name: str) -> AgentStatus | None:
        return self._rows.get(name)

    def all(self) -> list[AgentStatus]:
        return [self._rows[n] for n in sorted(self._rows)]

    def names(self) -> set[str]:
        return set(self._rows)

    def web_ports(self) -> dict[str, int]:
        return {n: r.web_port for n, r in self._rows.items() if r.web_port is not None}

    def is_suspended(self, name: str) -> bool:
        row = self._rows.get(name)
        return row is not None and row.suspended

    def repo_value(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM repo WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def events(
        self, *, after: int = 0, limit: int = 100, agent: str | None = None
    ) -> list[dict[str, Any]]:
        limit = max(1, min(limit, 1000))
        if agent:
            rows = self.db.execute(
                "SELECT id, at, agent, kind, message FROM events WHERE id > ? AND agent = ?"
                " ORDER BY id DESC LIMIT ?",
                (after, agent, limit),
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT id, at, agent, kind, message FROM events WHERE id > ?"
                " ORDER BY id DESC LIMIT ?",
                (after, limit),
            ).fetchall()
        keys = ("id", "at", "agent", "kind", "message")
        return [dict(zip(keys, r, strict=True)) for r in reversed(rows)]

    # --- writes ----------------------------------------------------------------
    def write(self, updates: Iterable[AgentStatus], events: Iterable[Event] = ()) -> int:
        """Write changed rows and events in one transaction; returns rows written.

        Each update's conditions are merged into the stored ones (transition
        times kept); a row equal to the stored one is skipped, so a no-op pass
        over a thousand agents writes nothing.
        """
        now = now_rfc3339()
        changed: list[AgentStatus] = []
        for u in updates:
            old = self._rows.get(u.name)
            if old is not None and _same(old, u):
                continue  # the common no-op: skip building a merged row at all
            merged = replace(
                u,
                conditions=merge_conditions(old.conditions if old else (), u.conditions, now),
                suspended=old.suspended if old is not None else u.suspended,
                report=old.report if old is not None and not u.report else u.report,
            )
            if old is not None and replace(merged, updated_at=old.updated_at) == old:
                continue
            changed.append(replace(merged, updated_at=now))
        evs = list(events)
        if not changed and not evs:
            return 0
        with self._tx():
            for row in changed:
                self._put(row)
            for ev in evs:
                self.db.execute(
                    "INSERT INTO events (at, agent, kind, message) VALUES (?, ?, ?, ?)",
                    (now, ev.agent, ev.kind, ev.message[:4000]),
                )
            if evs:
                self.db.execute(
                    "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?",
                    (EVENTS_KEPT,),
                )
        for row in changed:
            self._rows[row.name] = row
        self._notify({r.name for r in changed} | {e.agent for e in evs})
        return len(changed)

    def log(self, agent: str, kind: str, message: str = "") -> None:
        self.write((), [Event(agent, kind, message)])

    def set_suspended(self, name: str, suspended: bool) -> None:
        row = self._rows.get(name) or AgentStatus(name=name, updated_at=now_rfc3339())
        row = replace(row, suspended=suspended, updated_at=now_rfc3339())
        kind = "suspended" if suspended else "resumed"
        with self._tx():
            self._put(row)
            self.db.execute(
                "INSERT INTO events (at, agent, kind, message) VALUES (?, ?, ?, '')",
                (row.updated_at, name, kind),
            )
        self._rows[name] = row
        self._notify({name})

    def set_report(self, name: str, report: Mapping[str, Any], logged_in: Condition) -> None:
        """The harness's status.json for an agent c0re knows: LoggedIn and the fields at once."""
        row = self._rows.get(name)
        if row is None:
            return
        now = now_rfc3339()
        new = replace(
            row,
            report=dict(report),
            conditions=merge_conditions(row.conditions, [logged_in], now),
        )
        if new == row:
            return
        new = replace(new, updated_at=now)
        with self._tx():
            self._put(new)
        self._rows[name] = new
        self._notify({name})

    def set_repo_values(self, values: Mapping[str, str]) -> None:
        """Facts about the applied repo (HEAD, problems), in one transaction."""
        with self._tx():
            for key, value in values.items():
                self.db.execute(
                    "INSERT INTO repo (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
        self._notify({""})

    def set_repo_value(self, key: str, value: str) -> None:
        if self.repo_value(key) == value:
            return
        with self._tx():
            self.db.execute(
                "INSERT INTO repo (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        self._notify({""})

    def forget(self, name: str) -> None:
        """Drop an agent's row once it is neither desired nor running."""
        if name not in self._rows:
            return
        with self._tx():
            self.db.execute("DELETE FROM agents WHERE name = ?", (name,))
        del self._rows[name]
        self._notify({name})

    def _put(self, row: AgentStatus) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO agents (name, applied_commit, phase, conditions, last_error,"
            " web_port, suspended, report, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.name,
                row.applied_commit,
                row.phase,
                json.dumps([c.to_json() for c in row.conditions]),
                row.last_error,
                row.web_port,
                int(row.suspended),
                json.dumps(dict(row.report)),
                row.updated_at,
            ),
        )

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    def _notify(self, names: set[str]) -> None:
        for listener in self.listeners:
            for name in sorted(names):
                listener(name)


def _same(old: AgentStatus, new: AgentStatus) -> bool:
    """``new`` (a pass's row) would not change ``old`` (conditions compared without times)."""
    if (
        old.phase != new.phase
        or old.applied_commit != new.applied_commit
        or old.last_error != new.last_error
        or old.web_port != new.web_port
        or (new.report and new.report != old.report)
    ):
        return False
    mine = {c.type: c for c in old.conditions}
    for c in new.conditions:
        o = mine.get(c.type)
        if o is None or (o.status, o.reason, o.message) != (c.status, c.reason, c.message):
            return False
    return True


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

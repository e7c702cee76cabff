"""``broker.sqlite``: the schema and every statement the broker runs.

Write functions take a :class:`~hyperhive.broker.writer.Tx` and run inside a
group-committed transaction; read functions take the event loop's read-only
connection (WAL lets it read while a commit is in flight).
Leases are deliberately *not* stored: they do not survive a restart by
contract, so only the delivery count (``attempts``) and the failure count
(``failures``, nack or expiry) are durable.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from hyperhive.broker.writer import Tx, render_event
from hyperhive.clock import rfc3339
from hyperhive.names import MANAGER_MAILBOX, OPERATOR, SYSTEM

MIGRATIONS = [
    """
    CREATE TABLE mailboxes (
        name TEXT PRIMARY KEY,
        created_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        body TEXT NOT NULL,
        key TEXT,
        sent_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        acked_at REAL,
        dead_at REAL
    );
    CREATE UNIQUE INDEX messages_by_key ON messages (sender, key) WHERE key IS NOT NULL;
    CREATE INDEX messages_pending ON messages (recipient, id)
        WHERE acked_at IS NULL AND dead_at IS NULL;
    CREATE INDEX messages_by_recipient ON messages (recipient, id);
    CREATE INDEX messages_by_sender ON messages (sender, id);
    CREATE INDEX messages_done ON messages (coalesce(acked_at, dead_at));
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        message_id INTEGER,
        at REAL NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_by_message ON events (message_id);
    CREATE INDEX events_by_time ON events (at);
    """,
]

MESSAGE_COLUMNS = "id, sender, recipient, body, sent_at, attempts, failures, acked_at, dead_at"


@dataclass(frozen=True)
class Message:
    id: int
    sender: str
    recipient: str
    body: str
    sent_at: float
    attempts: int
    failures: int = 0
    acked_at: float | None = None
    dead_at: float | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Message:
        return cls(*row)

    def delivery(self) -> dict[str, Any]:
        """The shape ``recv`` returns."""
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.recipient,
            "body": self.body,
            "sent_at": rfc3339(self.sent_at),
            "attempt": self.attempts,
        }

    def listing(self, state: str) -> dict[str, Any]:
        """The shape ``GET /messages`` returns."""
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.recipient,
            "body": self.body,
            "sent_at": rfc3339(self.sent_at),
            "attempts": self.attempts,
            "failures": self.failures,
            "state": state,
            "acked_at": rfc3339(self.acked_at) if self.acked_at is not None else None,
            "dead_at": rfc3339(self.dead_at) if self.dead_at is not None else None,
        }


@dataclass(frozen=True)
class Sent:
    id: int
    created: bool
    recipient: str
    #: The stored row of a new message, so a waiting reader can be handed it
    #: without reading it back (None for a repeated key).
    message: Message | None = None


@dataclass(frozen=True)
class Failed:
    """The outcome of a nack or an expired lease."""

    dead: bool
    notice: Message | None = None


# --- writes (inside the writer's batch) ---------------------------------------


def insert_message(tx: Tx, sender: str, recipient: str, body: str, key: str | None) -> Sent:
    """Store a message (or find the first one sent with this key) and its ``send`` event."""
    if key is not None:
        row = tx.conn.execute(
            "SELECT id, recipient FROM messages WHERE sender = ? AND key = ?", (sender, key)
        ).fetchone()
        if row is not None:
            return Sent(row[0], False, row[1])
    # The operator has no agent to ack: a message to it is delivered once committed.
    acked_at = tx.now if recipient == OPERATOR else None
    cur = tx.conn.execute(
        "INSERT INTO messages (sender, recipient, body, key, sent_at, acked_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (sender, recipient, body, key, tx.now, acked_at),
    )
    mid = int(cur.lastrowid or 0)
    message = {"id": mid, "from": sender, "to": recipient, "body": body, "sent_at": tx.now_text}
    tx.event("send", mid, {"message": message})
    return Sent(mid, True, recipient, Message(mid, sender, recipient, body, tx.now, 0, 0, acked_at))


def deliver(tx: Tx, mid: int, attempt: int) -> None:
    """Record a delivery. ``max`` keeps it right whatever order batches land in."""
    tx.conn.execute("UPDATE messages SET attempts = max(attempts, ?) WHERE id = ?", (attempt, mid))
    tx.event("deliver", mid, {"message_id": mid, "attempt": attempt})


def ack(tx: Tx, mid: int, by: str) -> None:
    tx.conn.execute("UPDATE messages SET acked_at = ? WHERE id = ?", (tx.now, mid))
    tx.event("ack", mid, {"message_id": mid, "by": by})


def fail(tx: Tx, mid: int, reason: str, max_failures: int) -> Failed:
    """Count a failed delivery; the last allowed one dead-letters the message.

    ``system`` tells ``manager`` about a dead letter, except when the dead
    letter was itself for ``manager`` or was a ``system`` notice: that would
    loop, so it is only recorded.
    """
    row = tx.conn.execute(
        "UPDATE messages SET failures = failures + 1 WHERE id = ?"
        " RETURNING failures, sender, recipient, attempts",
        (mid,),
    ).fetchone()
    failures, sender, recipient, attempts = row
    tx.event(reason, mid, {"message_id": mid, "to": recipient, "failures": failures})
    if failures < max_failures:
        return Failed(dead=False)
    tx.conn.execute("UPDATE messages SET dead_at = ? WHERE id = ?", (tx.now, mid))
    tx.event("dead_letter", mid, {"message_id": mid, "from": sender, "to": recipient})
    if recipient == MANAGER_MAILBOX or sender == SYSTEM:
        return Failed(dead=True)
    text = (
        f"dead letter: message {mid} from {sender} to {recipient} failed {failures} "
        f"deliveries ({attempts} attempts) and will not be delivered again"
    )
    sent = insert_message(tx, SYSTEM, MANAGER_MAILBOX, text, None)
    notice = Message(sent.id, SYSTEM, MANAGER_MAILBOX, text, tx.now, 0)
    return Failed(dead=True, notice=notice)


def open_mailbox(tx: Tx, name: str) -> bool:
    cur = tx.conn.execute(
        "INSERT INTO mailboxes (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (name, tx.now),
    )
    if cur.rowcount:
        tx.event("mailbox_open", None, {"mailbox": name})
    return cur.rowcount > 0


def close_mailbox(tx: Tx, name: str, purge: bool) -> bool:
    cur = tx.conn.execute("DELETE FROM mailboxes WHERE name = ?", (name,))
    if purge:
        tx.conn.execute(
            "DELETE FROM events WHERE message_id IN"
            " (SELECT id FROM messages WHERE recipient = ? OR sender = ?)",
            (name, name),
        )
        tx.conn.execute("DELETE FROM messages WHERE recipient = ? OR sender = ?", (name, name))
    if cur.rowcount:
        tx.event("mailbox_close", None, {"mailbox": name, "purged": purge})
    return cur.rowcount > 0


def purge_done(tx: Tx, cutoff: float) -> int:
    """Retention: drop acked or dead messages finished before ``cutoff``, and their events."""
    ids = [
        r[0]
        for r in tx.conn.execute(
            "SELECT id FROM messages WHERE coalesce(acked_at, dead_at) < ?", (cutoff,)
        )
    ]
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        tx.conn.execute(f"DELETE FROM events WHERE message_id IN ({marks})", chunk)  # noqa: S608
        tx.conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)  # noqa: S608
    tx.conn.execute("DELETE FROM events WHERE message_id IS NULL AND at < ?", (cutoff,))
    return len(ids)


# --- reads (event loop) --------------------------------------------------------


def mailbox_names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM mailboxes ORDER BY name")]


def pending_ids(conn: sqlite3.Connection, mailbox: str) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT id FROM messages WHERE recipient = ? AND acked_at IS NULL"
            " AND dead_at IS NULL ORDER BY id",
            (mailbox,),
        )
    ]


def message(conn: sqlite3.Connection, mid: int) -> Message | None:
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?",  # noqa: S608
        (mid,),
    ).fetchone()
    return None if row is None else Message.from_row(row)


def messages_after(
    conn: sqlite3.Connection, after: int, limit: int, agent: str | None
) -> list[Message]:
    if agent is None:
        rows = conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after, limit),
        )
    else:
        rows = conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id > ?"  # noqa: S608
            " AND (recipient = ? OR sender = ?) ORDER BY id LIMIT ?",
            (after, agent, agent, limit),
        )
    return [Message.from_row(r) for r in rows]


def events_after(conn: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, str, str]]:
    """``(id, kind, data)`` of retained events after ``after``, for SSE replay."""
    return [
        (eid, kind, render_event(eid, kind, rfc3339(at), data))
        for eid, kind, at, data in conn.execute(
            "SELECT id, kind, at, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
    ]


def last_event_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(id) FROM events").fetchone()
    return int(row[0] or 0)


def counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Per recipient: pending (ready or leased), acked and dead message counts."""
    out: dict[str, dict[str, int]] = {}
    for recipient, pending, acked, dead in conn.execute(
        "SELECT recipient,"
        " sum(acked_at IS NULL AND dead_at IS NULL), sum(acked_at IS NOT NULL),"
        " sum(dead_at IS NOT NULL) FROM messages GROUP BY recipient"
    ):
        out[recipient] = {"pending": pending, "acked": acked, "dead": dead}
    return out

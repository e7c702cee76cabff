"""Open a sqlite database the one way this project does: WAL, numbered migrations.

Migrations are a list of SQL scripts; migration *i* (1-based) brings the
database from ``user_version`` i-1 to i. They are applied in one transaction
each, so a crash never leaves a half-migrated file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path


class MigrationError(RuntimeError):
    pass


def connect(
    path: Path,
    migrations: Sequence[str],
    *,
    synchronous: str = "FULL",
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """Open (creating if needed), set pragmas, migrate; returns an autocommit connection."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=check_same_thread, timeout=30.0
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    migrate(conn, migrations)
    return conn


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise MigrationError(
            f"database is at schema version {version}, newer than this program's "
            f"{len(migrations)}; refusing to touch it"
        )
    for i in range(version, len(migrations)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _split(migrations[i]):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={i + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _split(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit on its own)."""
    out: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n\t;"):
                out.append(current.strip())
            current = ""
    return out

"""The shared kernel: names, paths, the JSON-lines protocol, migrations."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperhive import jsonlines
from hyperhive.errors import NotFound
from hyperhive.names import (
    InvalidName,
    fnv1a32,
    is_agent_name,
    preferred_web_port,
    validate_agent_name,
    validate_mailbox_name,
)
from hyperhive.paths import Paths
from hyperhive.sqlite import MigrationError, connect


@pytest.mark.parametrize("name", ["a", "alice", "hm1nd", "a-b-c", "abcdefghi"])
def test_valid_names(name: str) -> None:
    assert validate_agent_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "1a",
        "abcdefghij",
        "a_b",
        "a b",
        "../x",
        "a;rm",
        "${x}",
        "manager",
        "operator",
        "system",
        "ä",
        "a\n",
        None,
        3,
    ],
)
def test_invalid_names(name: object) -> None:
    with pytest.raises(InvalidName):
        validate_agent_name(name)


@given(st.text())
def test_a_valid_name_is_a_safe_path_component(name: str) -> None:
    if is_agent_name(name):
        assert "/" not in name and ".." not in name and len(name) <= 9
        assert Paths(Path("/r"), Path("/s")).agent_root(name).parent == Path("/s/agents")


def test_mailbox_alias_and_ports() -> None:
    assert validate_mailbox_name("hm1nd") == "manager"
    assert validate_mailbox_name("manager") == "manager"
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C  # the published FNV-1a test vector
    assert preferred_web_port("hm1nd") == 8000
    assert 8100 <= preferred_web_port("alice") < 9000


def test_paths_layout() -> None:
    p = Paths(Path("/r"), Path("/s"))
    assert p.mailbox_sock("manager") == Path("/r/manager/broker.sock")
    assert p.mailbox_sock("alice") == Path("/r/agents/alice/broker.sock")
    assert p.agent_socket_dir("hm1nd") == Path("/r/manager")
    assert p.c0re_sock == Path("/r/manager/c0re.sock")
    assert p.agent_state_dir("bob") == Path("/s/agents/bob/state")
    with pytest.raises(InvalidName):
        p.agent_root("../etc")


async def test_jsonlines_survives_garbage(tmp_path: Path) -> None:
    async def handler(req: dict[str, Any]) -> dict[str, Any]:
        if req["cmd"] == "missing":
            raise NotFound("no such thing")
        if req["cmd"] == "boom":
            raise RuntimeError("bug")
        return {"echo": req["cmd"]}

    sock = tmp_path / "t.sock"
    server = await jsonlines.serve(sock, handler)
    async with server:
        assert sock.stat().st_mode & 0o777 == 0o600
        reader, writer = await asyncio.open_unix_connection(str(sock))
        for line, want in [
            (b"not json\n", "bad_request"),
            (b"[1,2]\n", "bad_request"),
            (b'{"x": 1}\n', "bad_request"),
            (b"\xff\xfe\n", "bad_request"),
            (b'{"cmd": "missing"}\n', "not_found"),
            (b'{"cmd": "boom"}\n', "internal"),
        ]:
            writer.write(line)
            resp = json.loads(await reader.readline())
            assert resp["ok"] is False and resp["error"]["code"] == want
        writer.write(b'{"cmd": "hi"}\n')
        assert json.loads(await reader.readline()) == {"ok": True, "echo": "hi"}
        writer.close()
        assert await jsonlines.request(sock, {"cmd": "x"}) == {"ok": True, "echo": "x"}
        resp = await asyncio.to_thread(jsonlines.request_sync, sock, {"cmd": "y"})
        assert resp == {"ok": True, "echo": "y"}


def test_unreachable(tmp_path: Path) -> None:
    with pytest.raises(jsonlines.Unreachable):
        jsonlines.request_sync(tmp_path / "nope.sock", {"cmd": "x"})


def test_migrations_are_numbered_and_refuse_the_future(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    migs = ["CREATE TABLE a (x);", "CREATE TABLE b (y); INSERT INTO b VALUES (1);"]
    conn = connect(db, migs)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    conn = connect(db, migs)  # idempotent
    assert conn.execute("SELECT count(*) FROM b").fetchone()[0] == 1
    conn.close()
    with pytest.raises(MigrationError):
        connect(db, migs[:1])
    with pytest.raises(sqlite3.OperationalError):
        connect(tmp_path / "y.sqlite", ["CREATE TABLE a (x);", "NOT SQL;"])
    conn = sqlite3.connect(tmp_path / "y.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()

"""host.sock end to end in-process: commands, fuzzed lines, and the CLI's exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperhive import jsonlines
from hyperhive.reconciler import cli
from hyperhive.reconciler.admin import Admin
from hyperhive.reconciler.gitrepo import commit_files
from hyperhive.reconciler.loop import Reconciler
from tests.c0re.desired_repo import agent_yaml
from tests.c0re.hive_fixture import REV, make_home, make_reconciler
from tests.fakes.memory_runtime import MemoryRuntime


class Running:
    def __init__(self, rec: Reconciler, rt: MemoryRuntime, sock: Path, home: Path) -> None:
        self.rec, self.rt, self.sock, self.home = rec, rt, sock, home

    async def ask(self, **req: object) -> dict[str, Any]:
        return await jsonlines.request(self.sock, dict(req))

    async def cli(self, *argv: str, home: bool = True) -> tuple[int, str, str]:
        """Run the real CLI in a thread (it blocks on the socket), capturing output."""
        out, err = io.StringIO(), io.StringIO()

        def run() -> int:
            old = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = out, err
            try:
                return cli.main([*argv, "--home", str(self.home)] if home else list(argv))
            finally:
                sys.stdout, sys.stderr = old

        code = await asyncio.to_thread(run)
        return code, out.getvalue(), err.getvalue()


def phase(hive: Running, name: str) -> str:
    return hive.rt.agents[name].phase


@pytest.fixture
async def hive(tmp_path: Path) -> AsyncIterator[Running]:
    paths = make_home(tmp_path)
    rt = MemoryRuntime()
    rec = make_reconciler(paths, rt)
    admin = Admin(paths, rec.store, rec, rt, None, REV)
    server = await jsonlines.serve(paths.host_sock, admin.handle)

    async def run_loop() -> None:
        async with asyncio.TaskGroup() as tg:
            await rec.run(tg)

    task = asyncio.create_task(run_loop())
    try:
        await asyncio.wait_for(rec.watching.wait(), 5)
        yield Running(rec, rt, paths.host_sock, tmp_path / "hive")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.close()
        await server.wait_closed()
        rec.store.close()


async def test_commands_over_the_socket(hive: Running) -> None:
    r = await hive.ask(cmd="reconcile")
    assert r["ok"] and [a["name"] for a in r["agents"]] == ["hm1nd"]
    commit_files(hive.rec.paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "add", {})
    r = await hive.ask(cmd="reconcile", name="alice")
    assert r["ok"] and r["agents"][0]["phase"] == "running"
    r = await hive.ask(cmd="suspend", name="alice")
    assert r == {"ok": True, "name": "alice", "suspended": True}
    r = await hive.ask(cmd="resume", name="alice")
    assert r["ok"] and r["suspended"] is False
    r = await hive.ask(cmd="kill", name="alice")
    assert r["ok"] and phase(hive, "alice") == "stopped"
    await hive.ask(cmd="reconcile", name="alice")
    assert phase(hive, "alice") == "stopped"  # killed = suspended: not restarted
    st_ = await hive.ask(cmd="status", name="alice")
    assert st_["agents"][0]["suspended"] is True
    await hive.ask(cmd="resume", name="alice")
    await hive.ask(cmd="reconcile", name="alice")
    assert phase(hive, "alice") == "running"
    r = await hive.ask(cmd="rebuild", name="alice")
    assert r["ok"] and hive.rt.calls[("rebuild", "alice")] == 1
    h = await hive.ask(cmd="history", name="alice")
    assert h["ok"] and len(h["commits"]) == 1
    r = await hive.ask(cmd="destroy", name="alice", purge=True)
    assert r["ok"] and r["purged"] is True and "alice" not in hive.rt.agents
    ev = await hive.ask(cmd="events", agent="alice")
    assert "destroy" in [e["kind"] for e in ev["events"]]
    r = await hive.ask(cmd="rollback", name="alice", rev=h["commits"][0]["commit"])
    assert r["ok"]
    await hive.ask(cmd="reconcile", name="alice")
    assert phase(hive, "alice") == "running"


REFUSALS: list[tuple[dict[str, object], str]] = [
    ({"cmd": "nope"}, "bad_request"),
    ({"cmd": "suspend"}, "bad_request"),
    ({"cmd": "suspend", "name": "../etc"}, "bad_request"),
    ({"cmd": "suspend", "name": "operator"}, "bad_request"),
    ({"cmd": "history", "name": 5}, "bad_request"),
    ({"cmd": "rollback", "name": "hm1nd", "rev": "--help"}, "bad_request"),
    ({"cmd": "rollback", "name": "hm1nd", "rev": "deadbeef"}, "not_found"),
    ({"cmd": "destroy", "name": "ghost"}, "not_found"),
    ({"cmd": "destroy", "name": "alice", "purge": "yes"}, "bad_request"),
    ({"cmd": "events", "limit": 0}, "bad_request"),
    ({"cmd": "send", "to": "alice", "body": ""}, "bad_request"),
    ({"cmd": "send", "to": "x;y", "body": "hi"}, "bad_request"),
    ({"cmd": "status", "name": "ghost"}, "not_found"),
    ({"cmd": "kill", "name": "ghost"}, "not_found"),
    ({"cmd": "destroy", "name": "hm1nd"}, "bad_request"),
]


async def test_refusals_have_codes(hive: Running) -> None:
    for req, code in REFUSALS:
        r = await hive.ask(**req)
        assert r["ok"] is False and r["error"]["code"] == code, (req, r)


async def test_fuzzed_lines_get_error_lines_and_daemon_stays_up(hive: Running) -> None:
    reader, writer = await asyncio.open_unix_connection(str(hive.sock), limit=1 << 21)

    async def one(line: bytes) -> dict[str, object]:
        writer.write(line.replace(b"\n", b" ") + b"\n")
        await writer.drain()
        resp: dict[str, object] = json.loads(await reader.readline())
        return resp

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
        ),
        max_leaves=8,
    )
    commands = st.sampled_from(
        [
            "status",
            "diff",
            "suspend",
            "resume",
            "history",
            "rollback",
            "events",
            "send",
            "kill",
            "destroy",
            "rebuild",
            "x",
            "",
        ]
    )
    requests = st.fixed_dictionaries(
        {"cmd": commands},
        optional={
            "name": json_values,
            "rev": json_values,
            "to": json_values,
            "body": json_values,
            "purge": json_values,
            "limit": json_values,
            "after": json_values,
            "agent": json_values,
        },
    )
    seen: list[bytes] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=60), requests.map(lambda r: json.dumps(r).encode())))
    def gen(line: bytes) -> None:
        seen.append(line)

    gen()
    for line in seen:
        if not line.strip(b" \n\r\t"):
            continue
        resp = await one(line)
        assert resp["ok"] in (True, False)
        if resp["ok"] is False:
            err = resp["error"]
            assert isinstance(err, dict) and err["code"] != "internal", (line, err)
    writer.close()
    r = await hive.ask(cmd="status")
    assert r["ok"]


async def test_cli_exit_codes(hive: Running, tmp_path: Path) -> None:
    code, out, _ = await hive.cli("reconcile")
    assert code == 0 and "hm1nd" in out
    code, out, _ = await hive.cli("status", "--json")
    assert code == 0 and json.loads(out)["agents"][0]["name"] == "hm1nd"
    code, out, _ = await hive.cli("diff")
    assert code == 0 and "no changes" in out
    commit_files(hive.rec.paths.applied, {"bob/agent.yaml": agent_yaml("bob")}, "add", {})
    hive.rec.stopping = True  # hold the loop so that diff sees the pending change
    code, out, _ = await hive.cli("diff")
    assert code == 1 and "bob: create, start" in out
    hive.rec.stopping = False
    code, _, err = await hive.cli("suspend", "no such")
    assert code == 4 and "bad_request" in err
    code, _, err = await hive.cli("status", "--run-dir", str(tmp_path / "nowhere"), home=False)
    assert code == 3 and "unreachable" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["rollback", "hm1nd"])
    assert exc.value.code == 2

"""hm1nd's c0re.sock: JSON lines in, approval ids or clear errors out."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from hyperhive import jsonlines
from hyperhive.reconciler.manager_socket import ManagerVerbs, serve_manager_socket
from tests.dashboard.repos import Hive, agent_yaml


async def test_verbs_over_the_socket(tmp_path: Path) -> None:
    hive = Hive(tmp_path)
    killed: list[str] = []
    asked: list[int] = []

    async def kill(name: str) -> None:
        killed.append(name)

    sock = tmp_path / "run" / "manager" / "c0re.sock"
    server = await serve_manager_socket(
        sock, ManagerVerbs(hive.queue, kill, lambda: asked.append(1))
    )
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        sha = hive.propose({"alice/agent.yaml": agent_yaml("alice")})
        assert await jsonlines.request(sock, {"cmd": "request_apply_commit", "sha": sha}) == {
            "ok": True, "id": 1}  # fmt: skip
        spawn = {"cmd": "request_spawn", "name": "bob", "spec": {"model": "haiku"}}
        assert await jsonlines.request(sock, spawn) == {"ok": True, "id": 2}
        refused = await jsonlines.request(sock, spawn)
        assert refused["ok"] is False and refused["error"]["code"] == "refused"
        assert "already pending" in refused["error"]["message"]
        bad = await jsonlines.request(sock, {"cmd": "request_apply_commit", "sha": "f" * 40})
        missing = f"commit {'f' * 40} does not exist in proposed"
        assert bad["error"] == {"code": "refused", "message": missing}
        assert await jsonlines.request(sock, {"cmd": "kill", "name": "alice"}) == {"ok": True}
        assert killed == ["alice"]
        forbidden: list[dict[str, Any]] = [
            {"cmd": "kill", "name": "hm1nd"},
            {"cmd": "kill", "name": "../x"},
            {"cmd": "approve", "id": 1},
        ]
        for req in forbidden:
            assert (await jsonlines.request(sock, req))["error"]["code"] == "bad_request"
        assert killed == ["alice"] and len(asked) == 2
        assert hive.queue.get(1).status == "pending"  # the manager cannot approve itself
    finally:
        server.close()
        await server.wait_closed()

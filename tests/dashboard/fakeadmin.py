"""A stand-in for c0re's admin handler where a test needs no reconcile loop.

It answers ``status`` from a fixed list in the wire shape of DESIGN §7 and
routes the approval verbs to the real queue's commands, so the dashboard is
exercised against the same contract the real admin serves.
"""

from __future__ import annotations

from typing import Any

from hyperhive.errors import BadRequest, NotFound
from hyperhive.reconciler.approvals import ApprovalQueue
from hyperhive.reconciler.dashboard.commands import approval_commands


def agent_row(name: str, port: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "phase": "running",
        "applied_commit": "0" * 40,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Running", "message": "",
             "last_transition": "2026-11-26T10:00:00.000Z"},
            {"type": "LoggedIn", "status": "False", "reason": "NoCredentials", "message": "",
             "last_transition": "2026-11-26T10:00:00.000Z"},
        ],
        "web_port": port,
        "last_error": "",
        "suspended": False,
        "turns": 3,
        "last_turn_at": "2026-11-26T10:01:00.000Z",
        "cost_usd": 0.0123,
        **extra,
    }  # fmt: skip


class FakeAdmin:
    def __init__(self, queue: ApprovalQueue | None, agents: list[dict[str, Any]]) -> None:
        self.agents = agents
        self.calls: list[dict[str, Any]] = []
        self.commands = approval_commands(queue) if queue is not None else {}

    async def __call__(self, req: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(req)
        cmd = req["cmd"]
        if cmd in self.commands:
            return await self.commands[cmd](req)
        if cmd == "pending":
            return {"approvals": []}
        if cmd == "status":
            found = [a for a in self.agents if req.get("name") in (None, a["name"])]
            if req.get("name") and not found:
                raise NotFound(f"no agent {req['name']!r}")
            return {"agents": found}
        if cmd == "history":
            return {"commits": [{"commit": "a" * 40, "summary": "Create", "author": "hive-c0re",
                                 "time": 0, "trailers": {"Operator-Action": "init"}}]}  # fmt: skip
        if cmd == "events":
            return {"events": [{"at": "2026-11-26T10:00:00.000Z", "agent": req.get("agent"),
                                "kind": "created", "message": "<b>x</b>"}]}  # fmt: skip
        if cmd in ("suspend", "resume", "rollback", "kill"):
            for a in self.agents:
                if a["name"] == req["name"] and cmd in ("suspend", "resume"):
                    a["suspended"] = cmd == "suspend"
            return {}
        raise BadRequest(f"unknown command {cmd!r}")

"""The operator's approval verbs for host.sock, the CLI and the dashboard.

``pending``, ``approve id`` and ``deny id [note]`` (DESIGN §7). They are
plain admin handlers (request object → answer without ``ok``) so c0re's admin
registry serves them on ``host.sock`` and the dashboard calls the very same
functions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hyperhive.errors import BadRequest
from hyperhive.reconciler.approvals import ApprovalQueue

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _id(req: dict[str, Any]) -> int:
    value = req.get("id")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("'id' must be an approval id (an integer)")
    return value


def _flag(req: dict[str, Any], key: str) -> bool:
    value = req.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{key!r} must be true or false")
    return value


def approval_commands(queue: ApprovalQueue) -> dict[str, Handler]:
    async def pending(req: dict[str, Any]) -> dict[str, Any]:
        """Pending approvals (``all``: recent decided ones too; ``diff``: with diffs)."""
        found = queue.listing(pending_only=not _flag(req, "all"), with_diff=_flag(req, "diff"))
        return {"approvals": [a.to_json() for a in found]}

    async def approve(req: dict[str, Any]) -> dict[str, Any]:
        return {"approval": (await queue.approve(_id(req))).to_json()}

    async def deny(req: dict[str, Any]) -> dict[str, Any]:
        note = req.get("note", "")
        return {"approval": (await queue.deny(_id(req), "" if note is None else note)).to_json()}

    return {"pending": pending, "approve": approve, "deny": deny}

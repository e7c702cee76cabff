"""``RUN/manager/c0re.sock``: the lifecycle verbs hm1nd may call (DESIGN §5, §10).

Only hm1nd's socket dir holds this socket (bound into its sandbox as
``/run/hive/c0re.sock``); the path is the identity. The verbs only *ask*:
``request_apply_commit`` and ``request_spawn`` queue an approval for the
operator and answer its id; ``kill`` stops an agent at once and suspends it,
which is not a change of desired state and so needs no approval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hyperhive import jsonlines
from hyperhive.errors import BadRequest
from hyperhive.names import MANAGER_AGENT, validate_agent_name
from hyperhive.reconciler.approvals import ApprovalQueue

log = logging.getLogger(__name__)

#: Stops one agent at once and suspends it (the core's admin ``kill``).
Kill = Callable[[str], Awaitable[None]]
VERBS = ("request_apply_commit", "request_spawn", "kill")


class ManagerVerbs:
    """The handler behind c0re.sock; every answer is one JSON line (hyperhive.jsonlines)."""

    def __init__(
        self, queue: ApprovalQueue, kill: Kill, on_request: Callable[[], None] | None = None
    ) -> None:
        self.queue = queue
        self.kill = kill
        self.on_request = on_request

    async def __call__(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req["cmd"]
        if cmd == "request_apply_commit":
            approval_id = self.queue.request_apply_commit(req.get("sha"))
            log.info("hm1nd asks to apply %s: approval %d", req.get("sha"), approval_id)
            self._requested()
            return {"id": approval_id}
        if cmd == "request_spawn":
            approval_id = self.queue.request_spawn(req.get("name"), req.get("spec"))
            log.info("hm1nd asks to spawn %s: approval %d", req.get("name"), approval_id)
            self._requested()
            return {"id": approval_id}
        if cmd == "kill":
            name = validate_agent_name(req.get("name"))
            if name == MANAGER_AGENT:
                raise BadRequest("hm1nd may not kill itself")
            await self.kill(name)
            return {}
        raise BadRequest(f"unknown command {cmd!r}; c0re.sock knows {', '.join(VERBS)}")

    def _requested(self) -> None:
        if self.on_request is not None:
            self.on_request()


async def serve_manager_socket(path: Path, verbs: ManagerVerbs) -> asyncio.Server:
    """Listen on ``RUN/manager/c0re.sock`` (0600)."""
    return await jsonlines.serve(path, verbs, mode=0o600)

"""hm1nd's claude calls request_apply_commit; the call reaches c0re.sock."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hyperhive import jsonlines
from tests.harness.conftest import Hive
from tests.polling import wait_until


class C0reThread:
    """A JSON-lines c0re.sock served from its own thread and event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        return {"id": 41}

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(jsonlines.serve(self.path, self._handle))
        self.ready.set()
        self.loop.run_forever()
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    def __enter__(self) -> C0reThread:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def c0re(hive: Hive) -> Iterator[C0reThread]:
    with C0reThread(hive.broker.open_mailbox("manager") / "c0re.sock") as c:
        yield c


@pytest.mark.slow
def test_manager_requests_apply_commit_through_c0re_sock(hive: Hive, c0re: C0reThread) -> None:
    hm1nd = hive.harness("hm1nd")
    args = json.dumps({"sha": "0123abcd"})
    hive.broker.send("manager", f"please apply [fake:call request_apply_commit {args}]")
    (end,) = wait_until(hm1nd.turn_ends, "hm1nd's turn", timeout=60)
    assert end["ok"], end
    assert c0re.requests == [{"cmd": "request_apply_commit", "sha": "0123abcd"}]
    (result,) = [
        block
        for e in hm1nd.events()
        if e["kind"] == "stream" and e["data"].get("type") == "user"
        for block in e["data"]["message"]["content"]
        if block.get("type") == "tool_result"
    ]
    assert json.loads(result["content"][0]["text"]) == {"requested": True, "id": 41}
    init = next(e["data"] for e in hm1nd.events() if e["data"].get("subtype") == "init")
    assert init["cwd"] == str(hm1nd.state.parent / "agents")
    assert "mcp__hive__request_apply_commit" in init["tools"]

"""The web UI in-process on a real uvicorn unix socket: SSE replay and resume, CSRF, pages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from hyperhive.harness.agent_config import AgentConfig
from hyperhive.harness.events import STREAM, TURN_END, TURN_START, EventLog
from hyperhive.harness.login import LoginFlow
from hyperhive.harness.status import StatusFile
from hyperhive.harness.transcript import render
from hyperhive.harness.web import Csrf, WebUI
from tests.polling import until


def _config(tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        name="alice",
        role="agent",
        model="haiku",
        system_prompt="",
        allowed_tools=(),
        socket_dir=tmp_path,
        state_dir=tmp_path,
        claude_config_dir=tmp_path / "claude",
        workdir=tmp_path / "work",
        env={},
    )


class Served:
    def __init__(self, tmp_path: Path) -> None:
        self.cfg = _config(tmp_path)
        self.events = EventLog(self.cfg.events_db)
        self.status = StatusFile(self.cfg.status_file)
        self.ui = WebUI(
            self.cfg, self.events, self.status, LoginFlow(self.cfg, ["false"], asyncio.Event())
        )

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.cfg.web_sock)),
            base_url="http://agent",
            timeout=10,
        )


@contextlib.asynccontextmanager
async def serve(tmp_path: Path) -> AsyncIterator[Served]:
    served = Served(tmp_path)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(served.cfg.web_sock))
    config = uvicorn.Config(served.ui.app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started, "uvicorn to start")  # uvicorn exposes no startup event
    try:
        yield served
    finally:
        served.ui.shutdown.set()
        server.should_exit = True
        await task
        sock.close()
        served.cfg.web_sock.unlink()
        served.events.close()


async def _read_events(
    client: httpx.AsyncClient, count: int, last_id: str | None = None
) -> AsyncIterator[tuple[str, str, str]]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    async with client.stream("GET", "/events", headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event, ident, data = "message", "", []
        seen = 0
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                ident = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                if event == "hive":
                    yield event, ident, "\n".join(data)
                    seen += 1
                    if seen == count:
                        return
                event, ident, data = "message", "", []


async def _collect(client: httpx.AsyncClient, count: int, last_id: str | None = None) -> list[str]:
    async with asyncio.timeout(10):
        return [i async for _, i, _ in _read_events(client, count, last_id)]


def _turn(events: EventLog, turn: int, body: str) -> None:
    message = {"id": turn, "from": "operator", "to": "alice", "body": body, "attempt": 1}
    events.append(turn, TURN_START, {"message": message})
    content = [{"type": "tool_use", "name": "mcp__hive__send", "input": {"to": "bob"}}]
    events.append(turn, STREAM, {"type": "assistant", "message": {"content": content}})
    events.append(turn, TURN_END, {"ok": True, "total_cost_usd": 0.01, "duration_ms": 900})


async def test_sse_replays_then_goes_live_and_resumes_by_last_event_id(tmp_path: Path) -> None:
    async with serve(tmp_path) as served, served.client() as client:
        _turn(served.events, 1, "first")
        live = asyncio.create_task(_collect(client, 6))
        await until(lambda: served.events.followers == 1, "the SSE stream to follow")
        _turn(served.events, 2, "second")
        assert await live == ["1", "2", "3", "4", "5", "6"]
        assert await _collect(client, 2, last_id="4") == ["5", "6"]

    # a restart: a new process on the same events.sqlite resumes where the page left off
    async with serve(tmp_path) as served, served.client() as client:
        resumed = asyncio.create_task(_collect(client, 3, last_id="6"))
        await until(lambda: served.events.followers == 1, "the SSE stream to follow")
        _turn(served.events, 3, "third")
        assert await resumed == ["7", "8", "9"]


async def test_forms_need_a_valid_token_and_a_matching_origin(tmp_path: Path) -> None:
    async with serve(tmp_path) as served, served.client() as client:
        page = (await client.get("/login")).text
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token
        assert (await client.post("/login", data={"action": "start"})).status_code == 403
        forged = {"csrf": "1.deadbeef", "action": "start"}
        assert (await client.post("/login", data=forged)).status_code == 403
        foreign = {"Origin": "http://evil.example"}
        ok = {"csrf": token.group(1), "action": "start"}
        assert (await client.post("/login", data=ok, headers=foreign)).status_code == 403
        assert (await client.post("/login", data=ok)).status_code == 303
        # through c0re's proxy: Host is dropped, X-Hive-Csrf carries c0re's token
        proxied = {"Origin": "http://127.0.0.1:8123", "X-Hive-Csrf": "c0re-token"}
        page = (await client.get("/login", headers=proxied)).text
        assert 'name="csrf" value="c0re-token"' in page
        with_proxy_token = {"csrf": "c0re-token", "action": "start"}
        r = await client.post("/login", data=with_proxy_token, headers=proxied)
        assert r.status_code == 303
        wrong = {"csrf": "other", "action": "start"}
        assert (await client.post("/login", data=wrong, headers=proxied)).status_code == 403
        await served.ui.login.aclose()


async def test_page_status_and_the_send_box(tmp_path: Path) -> None:
    async with serve(tmp_path) as served, served.client() as client:
        page = (await client.get("/", headers={"X-Hive-Csrf": "proxy-token"})).text
        assert '<form class="send" method="post" action="send">' in page
        assert 'name="csrf" value="proxy-token"' in page
        assert 'name="body"' in page
        own = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/")).text)
        assert own and served.ui.csrf.valid(own.group(1))
        status = (await client.get("/status.json")).json()
        assert status["name"] == "alice" and status["logged_in"] is False
        assert (await client.get("/static/hive.css")).status_code == 200
        assert (await client.post("/send", data={"body": "x"})).status_code in (404, 405)


def test_transcript_escapes_what_claude_and_senders_write(tmp_path: Path) -> None:
    events = EventLog(tmp_path / "e.sqlite")
    hostile = "<script>alert(1)</script>"
    message = {"id": 1, "from": "operator", "body": hostile, "attempt": 2}
    start = events.append(1, TURN_START, {"message": message})
    text = events.append(
        1,
        STREAM,
        {"type": "assistant", "message": {"content": [{"type": "text", "text": hostile}]}},
    )
    for event in (start, text):
        html = render(event)
        assert "<script>" not in html and "&lt;script&gt;" in html
    assert "attempt 2" in render(start)
    retry = {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 2}
    retry |= {"error_status": 529, "error": "overloaded"}
    assert "api retry 1/2 after 529 overloaded" in render(events.append(1, STREAM, retry))
    failed = events.append(1, TURN_END, {"ok": False, "error": "API Error: 500 <b>"})
    assert "failed" in render(failed) and "&lt;b&gt;" in render(failed)
    assert json.loads(json.dumps(failed.to_json()))["kind"] == "turn_end"
    events.close()


@pytest.mark.parametrize("token", ["", "x", "1.2.3", "99999999999.abc", "abc.def"])
def test_csrf_rejects_malformed_tokens(token: str) -> None:
    assert Csrf(b"k" * 32).valid(token) is False
    assert Csrf(b"k" * 32).valid(Csrf(b"k" * 32).token()) is True


def test_old_events_are_pruned_on_start_and_ids_never_repeat(tmp_path: Path) -> None:
    events = EventLog(tmp_path / "e.sqlite")
    for n in range(10):
        events.append(1, STREAM, {"n": n})
    events.close()
    events = EventLog(tmp_path / "e.sqlite", keep=3)
    assert [e.id for e in events.recent()] == [8, 9, 10]
    assert events.append(2, STREAM, {}).id == 11
    events.close()

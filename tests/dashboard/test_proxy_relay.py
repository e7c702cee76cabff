"""The agent web-UI proxy and the broker SSE relay, against a real broker.

The upstream web UI is a tiny starlette app on a unix socket (the harness's
contract: pages, assets, SSE on web.sock), so the proxy is tested alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hyperhive.paths import Paths
from hyperhive.reconciler.dashboard.auth import OperatorAuth
from hyperhive.reconciler.dashboard.proxy import ProxyFleet
from hyperhive.reconciler.dashboard.relay import BrokerLink, parse_sse
from tests.dashboard.procs import BrokerProcess
from tests.polling import until


def upstream_app() -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        resp = JSONResponse({"path": request.url.path, "query": request.url.query,
                             "headers": dict(request.headers), "body": body.decode()})  # fmt: skip
        resp.set_cookie("planted", "evil")
        return resp

    async def events(request: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"id: {i}\nevent: tick\ndata: {i}\n\n".encode()
            await asyncio.Event().wait()

        return StreamingResponse(gen(), media_type="text/event-stream")

    return Starlette(routes=[Route("/events", events),
                             Route("/{p:path}", echo, methods=["GET", "POST"])])  # fmt: skip


@pytest.fixture
async def hive(tmp_path: Path) -> AsyncIterator[tuple[Paths, BrokerProcess]]:
    paths = Paths.from_home(tmp_path)
    broker = BrokerProcess(paths, tmp_path / "broker.log")
    await broker.start()
    try:
        yield paths, broker
    finally:
        broker.stop()


async def control(paths: Paths, method: str, url: str, **kw: object) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(uds=str(paths.broker_sock))
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
        return await c.request(method, url, **kw)  # type: ignore[arg-type]


async def test_proxy(hive: tuple[Paths, BrokerProcess], tmp_path: Path) -> None:
    paths, _broker = hive
    assert (await control(paths, "PUT", "/mailboxes/alice")).status_code in (200, 201)
    auth = OperatorAuth.load(paths.operator_token, None, "127.0.0.1")
    sock = paths.web_sock("alice")
    sock.parent.mkdir(parents=True, exist_ok=True)
    upstream = uvicorn.Server(uvicorn.Config(upstream_app(), uds=str(sock), log_level="warning",
                                             lifespan="off"))  # fmt: skip
    upstream_task = asyncio.create_task(upstream.serve())
    fleet = ProxyFleet("127.0.0.1", auth, BrokerLink(paths.broker_sock), paths.web_sock)
    try:
        await until(lambda: upstream.started, "the fake web UI", timeout=15)
        await fleet.sync({"alice": 0})
        port = fleet.open["alice"][1].port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            # No session: nothing reaches the agent.
            assert (await c.get("/x")).status_code == 401
            r = await c.get(f"/x?a=1&token={auth.token}")
            assert r.status_code == 303 and r.headers["location"] == "/x?a=1"
            r = await c.get("/page?a=1", headers={"Authorization": "Bearer secret"})
            seen = r.json()
            assert (seen["path"], seen["query"]) == ("/page", "a=1")
            assert "cookie" not in seen["headers"] and "authorization" not in seen["headers"]
            assert seen["headers"]["x-hive-csrf"] == auth.agent_csrf("alice") != auth.csrf
            assert "set-cookie" not in r.headers  # the agent plants no cookie
            assert r.headers["x-frame-options"] == "DENY"
            # SSE streams through.
            async with c.stream("GET", "/events") as s:
                got = []
                async for ev in parse_sse(s.aiter_lines()):
                    if ev is not None:
                        got.append(ev.data)
                    if len(got) == 3:
                        break
            assert got == ["0", "1", "2"]
            # The send box is served by c0re, never by the agent.
            assert (await c.post("/send", data={"body": "hi"})).status_code == 403
            for wrong in (auth.csrf, auth.agent_csrf("bob")):  # the dashboard's, another agent's
                assert (await c.post("/send", data={"body": "x", "csrf": wrong})).status_code == 403
            r = await c.post(
                "/send", data={"body": "hello alice", "csrf": auth.agent_csrf("alice")}
            )
            assert r.status_code == 303
            msgs = (await control(paths, "GET", "/messages?agent=alice")).json()["messages"]
            assert [(m["from"], m["to"], m["body"]) for m in msgs] == [
                ("operator", "alice", "hello alice")
            ]
        await fleet.sync({})
        assert fleet.open == {}
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as c:
                await c.get(f"http://127.0.0.1:{port}/")
    finally:
        await fleet.close()
        upstream.should_exit = True
        await upstream_task


async def test_proxy_without_upstream_says_so(tmp_path: Path) -> None:
    paths = Paths.from_home(tmp_path)
    auth = OperatorAuth.load(paths.operator_token, None, "127.0.0.1")
    fleet = ProxyFleet("127.0.0.1", auth, BrokerLink(paths.broker_sock), paths.web_sock)
    try:
        await fleet.sync({"bob": 0})
        port = fleet.open["bob"][1].port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     cookies={"hive_session": auth.session}) as c:  # fmt: skip
            r = await c.get("/")
            assert r.status_code == 502 and "not up" in r.text
    finally:
        await fleet.close()


async def test_relay_resumes_across_broker_restart(hive: tuple[Paths, BrokerProcess]) -> None:
    paths, broker = hive
    link = BrokerLink(paths.broker_sock)
    await link.send("operator", "operator", "before the stream")
    seen: list[str] = []
    links: list[str] = []

    async def follow() -> None:
        async for ev in link.follow(None):
            if ev is not None and ev.event == "send":
                seen.append(json.loads(ev.data)["message"]["body"])
            elif ev is not None and ev.event == "link":
                links.append(ev.data)

    task = asyncio.create_task(follow())
    try:
        await until(lambda: seen == ["before the stream"], "the backlog", timeout=15)
        await link.send("operator", "operator", "one")
        await until(lambda: seen[-1:] == ["one"], "a live message", timeout=15)
        broker.stop()
        await until(lambda: links[-1:] == ["down"], "the relay to notice", timeout=15)
        await broker.start()
        await link.send("operator", "operator", "two")  # may be sent before the relay is back
        await until(lambda: seen[-1:] == ["two"], "the relay to catch up", timeout=15)
        assert seen == ["before the stream", "one", "two"]
        assert links == ["up", "down", "up"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

"""c0re's listener in front of each agent's web UI (DESIGN §10 "Operator access").

Agents share the host's network, so an agent's UI port must not be served by
the agent itself: anything that can reach the port could then act as the
operator. c0re listens on every agent's ``web_port``, checks the operator
session, strips ``Cookie`` and ``Authorization`` (the agent never sees the
operator's session), drops any ``Set-Cookie`` the agent answers (it may not
plant cookies on the operator's browser), and proxies pages, assets and SSE
to the harness on ``web.sock``. The send box's ``POST send`` never reaches the
agent: c0re checks the CSRF token and sends through the broker's control
socket ``from: operator``.

The harness learns the CSRF token to render into its forms from the request
header ``X-Hive-Csrf`` that only this proxy sets. It is this agent's own token:
the agent's code runs in the operator's browser on a same-site origin, so a
token it knows must be worthless anywhere else (the dashboard has its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path

import httpx
import uvicorn
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from hyperhive.errors import HiveError
from hyperhive.names import OPERATOR, mailbox_for_agent
from hyperhive.reconciler.dashboard.auth import SECURITY_HEADERS, OperatorAuth, OperatorGate
from hyperhive.reconciler.dashboard.relay import BrokerLink

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
#: Never forwarded either way: hop-by-hop headers and the operator's credentials.
DROP_REQUEST = frozenset(
    {"cookie", "authorization", "host", "connection", "keep-alive", "te", "upgrade",
     "proxy-authorization", "transfer-encoding", "x-hive-csrf"}
)  # fmt: skip
DROP_RESPONSE = frozenset(
    {"set-cookie", "connection", "keep-alive", "transfer-encoding", "content-length"}
)


class AgentWebProxy:
    """The ASGI app of one agent's listener."""

    def __init__(self, agent: str, web_sock: Path, auth: OperatorAuth, broker: BrokerLink) -> None:
        self.agent = agent
        self.web_sock = web_sock
        self.auth = auth
        self.broker = broker
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(web_sock)),
            base_url="http://agent",
            timeout=httpx.Timeout(10.0, read=None),
        )
        self.asgi: ASGIApp = OperatorGate(self._app, auth, open_paths=())

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if scope["path"] == "/send" and scope["method"] == "POST":
            response = await self.send_box(request)
        else:
            response = await self.forward(request)
        await response(scope, receive, send)

    async def send_box(self, request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return self._fail(request, 413, "too_large", "message too large")
        form = await request.form(max_files=0, max_fields=10)
        if not self.auth.csrf_ok(form.get("csrf"), self.auth.agent_csrf(self.agent)):
            return self._fail(request, 403, "csrf", "missing or invalid CSRF token")
        body = form.get("body")
        if not isinstance(body, str) or not body.strip():
            return self._fail(request, 400, "bad_request", "write a message first")
        try:
            mid = await self.broker.send(OPERATOR, mailbox_for_agent(self.agent), body)
        except HiveError as e:
            return self._fail(request, 502, e.code, e.message)
        if _wants_json(request):
            return JSONResponse({"ok": True, "id": mid}, 201, SECURITY_HEADERS)
        return RedirectResponse("/", 303, SECURITY_HEADERS)

    def _fail(self, request: Request, status: int, code: str, message: str) -> Response:
        if _wants_json(request):
            body = {"ok": False, "error": {"code": code, "message": message}}
            return JSONResponse(body, status, SECURITY_HEADERS)
        return HTMLResponse(_page(f"✕ {message}"), status, SECURITY_HEADERS)

    async def forward(self, request: Request) -> Response:
        headers = [
            (k, v)
            for k, v in request.headers.raw
            if k.decode("latin-1").lower() not in DROP_REQUEST
        ]
        headers.append((b"x-hive-csrf", self.auth.agent_csrf(self.agent).encode()))
        url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        upstream = self.client.build_request(
            request.method, url, headers=headers, content=request.stream()
        )
        try:
            resp = await self.client.send(upstream, stream=True)
        except httpx.HTTPError:
            return HTMLResponse(
                _page(f"{self.agent}'s web UI is not up (yet). It starts with the agent."),
                502,
                SECURITY_HEADERS,
            )
        out = [(k, v) for k, v in resp.headers.raw if k.decode("latin-1").lower() not in
               DROP_RESPONSE]  # fmt: skip
        response = StreamingResponse(
            resp.aiter_raw(), status_code=resp.status_code, background=BackgroundTask(resp.aclose)
        )
        response.raw_headers = [
            *out,
            *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
              if k != "cache-control" and k.encode() not in {h for h, _ in out}),
        ]  # fmt: skip
        return response


def _wants_json(request: Request) -> bool:
    return request.headers.get("x-hive-fetch") == "1" or "application/json" in request.headers.get(
        "accept", ""
    )


def _page(message: str) -> str:
    return (
        "<!doctype html><meta charset=utf-8><title>hyperhive</title>"
        '<body style="background:#0b0b10;color:#39ff14;font-family:monospace;padding:2em">'
        f"<p>{escape(message)}</p></body>"
    )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to c0re (many run in one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """Bind and listen now, so a port clash is an error here, not inside uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


@dataclass
class Listener:
    """One uvicorn server on one bound socket, run as a task the owner awaits on close."""

    server: uvicorn.Server
    sock: socket.socket
    task: asyncio.Task[None]

    @classmethod
    def start(cls, app: ASGIApp, host: str, port: int, name: str) -> Listener:
        sock = listen(host, port)
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False,
            timeout_graceful_shutdown=1, ws="none",
        )  # fmt: skip
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"listener-{name}")
        return cls(server, sock, task)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        except (TimeoutError, SystemExit, Exception):
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        self.sock.close()


class ProxyFleet:
    """Opens and closes agent listeners as agents come and go."""

    def __init__(self, host: str, auth: OperatorAuth, broker: BrokerLink,
                 web_sock: Callable[[str], Path]) -> None:  # fmt: skip
        self.host = host
        self.auth = auth
        self.broker = broker
        self.web_sock = web_sock
        self.open: dict[str, tuple[int, Listener, AgentWebProxy]] = {}
        #: Agents whose port could not be bound (held by another program), by port.
        self.failed: dict[str, int] = {}

    async def sync(self, wanted: Mapping[str, int]) -> None:
        for name in [n for n, (port, _, _) in self.open.items() if wanted.get(n) != port]:
            await self._close(name)
        for name, port in wanted.items():
            if name in self.open:
                continue
            proxy = AgentWebProxy(name, self.web_sock(name), self.auth, self.broker)
            try:
                listener = Listener.start(proxy.asgi, self.host, port, name)
            except OSError as e:
                await proxy.aclose()
                if self.failed.get(name) != port:  # said once; retried quietly on every sync
                    log.warning("cannot listen for %s's web UI on %s:%d: %s", name, self.host,
                                port, e.strerror)  # fmt: skip
                self.failed[name] = port
                continue
            self.failed.pop(name, None)
            self.open[name] = (port, listener, proxy)
            log.info("proxying %s's web UI on http://%s:%d/", name, self.host, port)

    async def _close(self, name: str) -> None:
        _port, listener, proxy = self.open.pop(name)
        await listener.stop()
        await proxy.aclose()

    async def close(self) -> None:
        """Every listener at once: each may take its graceful-shutdown time, and
        c0re's SIGTERM must not wait for them one after another."""
        await asyncio.gather(*(self._close(name) for name in list(self.open)))

"""The :7000 dashboard: pages, form actions, and the two SSE streams.

Every read and every action goes through c0re's admin command handler (the
same one ``host.sock`` serves, DESIGN §7), so the dashboard can do nothing
the CLI cannot, and the two never disagree. Actions are POST forms carrying
the CSRF token; without JavaScript they answer with a redirect (303) back to
the page, with ``hive.js`` (``X-Hive-Fetch: 1``) they answer JSON and the
page refreshes its ``<main>`` in place.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp

from hyperhive.config import ConfigError, take
from hyperhive.errors import HiveError, NotFound
from hyperhive.names import is_agent_name
from hyperhive.reconciler.dashboard import pages
from hyperhive.reconciler.dashboard.auth import SECURITY_HEADERS, OperatorAuth, OperatorGate
from hyperhive.reconciler.dashboard.bus import StatusBus
from hyperhive.reconciler.dashboard.relay import BrokerLink

log = logging.getLogger(__name__)

#: c0re's admin command handler: ``{"cmd": …}`` → the answer without ``ok``; raises HiveError.
Admin = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {**SECURITY_HEADERS, "content-security-policy": CSP}
STATUS_CODES = {"not_found": 404, "bad_request": 400, "conflict": 409, "refused": 409}
MAX_FORM = 64 * 1024
MAX_FAILURES, LOCKOUT_SECONDS = 10, 60.0


@dataclass(frozen=True)
class DashboardSettings:
    host: str = "127.0.0.1"
    port: int = 7000
    password_file: Path | None = None

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> DashboardSettings:
        """``[dashboard] listen, port, password_file`` (also accepted: passwordFile)."""
        unknown = set(section) - {"listen", "port", "password_file", "passwordFile", "enable"}
        if unknown:
            raise ConfigError(f"[dashboard]: unknown option(s) {sorted(unknown)}")
        port = take(section, "port", int, 7000)
        if not 0 <= port <= 65535:
            raise ConfigError(f"[dashboard] port {port} is out of range")
        pw = take(section, "password_file", str, None) or take(section, "passwordFile", str, None)
        return cls(take(section, "listen", str, "127.0.0.1"), port, Path(pw) if pw else None)


def _static(name: str, media_type: str) -> Response:
    body = resources.files("hyperhive.reconciler.dashboard").joinpath(name).read_bytes()
    return Response(body, media_type=media_type, headers={"cache-control": "max-age=300"})


def is_fetch(request: Request) -> bool:
    return request.headers.get("x-hive-fetch") == "1"


class DashboardApp:
    """Request handlers over the admin handler, the status bus and the broker link."""

    def __init__(
        self, admin: Admin, auth: OperatorAuth, bus: StatusBus, broker: BrokerLink
    ) -> None:
        self.admin = admin
        self.auth = auth
        self.bus = bus
        self.broker = broker
        #: Times of recent wrong secrets on /login (a password may face the network).
        self.failures: deque[float] = deque()

    def asgi(self) -> ASGIApp:
        routes = [
            Route("/", self.agents_page),
            Route("/approvals", self.approvals_page),
            Route("/agents/{name}", self.agent_page),
            Route("/flow", self.flow_page),
            Route("/approvals/{id:int}/{verb}", self.decide, methods=["POST"]),
            Route("/agents/{name}/{verb}", self.agent_action, methods=["POST"]),
            Route("/events", self.status_events),
            Route("/flow/stream", self.flow_stream),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/healthz", self.healthz),
            Route("/static/hive.css", lambda r: _static("hive.css", "text/css")),
            Route("/static/hive.js", lambda r: _static("hive.js", "text/javascript")),
        ]
        app = Starlette(routes=routes)
        return OperatorGate(
            app,
            self.auth,
            open_paths=("/healthz", "/login", "/static/hive.css"),
            login_path="/login",
        )

    # --- pages ------------------------------------------------------------------
    async def _page(self, request: Request, title: str, nav: str, main: str) -> Response:
        pending = len((await self.admin({"cmd": "pending"})).get("approvals", []))
        if request.headers.get("x-hive-partial") == "1":
            return HTMLResponse(main, headers={**HEADERS, "x-hive-pending": str(pending)})
        html = pages.layout(
            title,
            main,
            nav=nav,
            pending=pending,
            csrf=self.auth.csrf,
            msg=request.query_params.get("msg", "")[:300],
        )
        return HTMLResponse(html, headers=HEADERS)

    async def agents_page(self, request: Request) -> Response:
        agents = (await self.admin({"cmd": "status"})).get("agents", [])
        pending = len((await self.admin({"cmd": "pending"})).get("approvals", []))
        host = request.url.hostname or "127.0.0.1"
        return await self._page(
            request, "agents", "agents", pages.agents_page(agents, host, pending)
        )

    async def approvals_page(self, request: Request) -> Response:
        answer = await self.admin({"cmd": "pending", "all": True, "diff": True})
        main = pages.approvals_page(answer.get("approvals", []), self.auth.csrf)
        return await self._page(request, "approvals", "approvals", main)

    async def agent_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not is_agent_name(name):
            return self._not_found(f"no agent {name!r}")
        try:
            agents = (await self.admin({"cmd": "status", "name": name})).get("agents", [])
        except NotFound as e:
            return self._not_found(e.message)
        if not agents:
            return self._not_found(f"no agent {name!r}")
        history = (await self._optional({"cmd": "history", "name": name})).get("commits", [])
        req = {"cmd": "events", "agent": name, "limit": 1000}
        events = (await self._optional(req)).get("events", [])
        host = request.url.hostname or "127.0.0.1"
        main = pages.agent_page(agents[0], history, events[-50:][::-1], host, self.auth.csrf)
        return await self._page(request, name, "agents", main)

    async def _optional(self, req: dict[str, Any]) -> dict[str, Any]:
        """A part of a page that may fail alone (the git history of a destroyed agent)."""
        try:
            return await self.admin(req)
        except HiveError as e:
            log.info("dashboard: %s failed: %s", req.get("cmd"), e.message)
            return {}

    def _not_found(self, message: str) -> Response:
        return HTMLResponse(
            pages.layout("not found", f"<h1>404</h1><p>{pages.e(message)}</p>", nav="",
                         pending=0, csrf=self.auth.csrf),
            status_code=404,
            headers=HEADERS,
        )  # fmt: skip

    async def flow_page(self, request: Request) -> Response:
        return await self._page(request, "flow", "flow", pages.flow_page())

    # --- actions ----------------------------------------------------------------
    async def _form(self, request: Request) -> dict[str, str] | Response:
        """The posted fields, or the 403 answer when the CSRF token is missing or wrong."""
        if int(request.headers.get("content-length") or 0) > MAX_FORM:
            return self._answer(request, HiveError("form too large", code="too_large"), "/")
        form = await request.form(max_files=0, max_fields=20)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not self.auth.csrf_ok(fields.get("csrf")):
            return JSONResponse(
                {"ok": False, "error": {"code": "csrf", "message": "missing or invalid CSRF "
                                        "token; reload the page"}},
                status_code=403,
                headers=HEADERS,
            )  # fmt: skip
        return fields

    async def decide(self, request: Request) -> Response:
        fields = await self._form(request)
        if isinstance(fields, Response):
            return fields
        verb = request.path_params["verb"]
        req: dict[str, Any] = {"cmd": verb, "id": request.path_params["id"]}
        if verb == "deny":
            req["note"] = fields.get("note", "")
        elif verb != "approve":
            return self._answer(request, NotFound(f"no action {verb!r}"), "/approvals")
        return await self._run(request, req, "/approvals")

    async def agent_action(self, request: Request) -> Response:
        fields = await self._form(request)
        if isinstance(fields, Response):
            return fields
        name, verb = request.path_params["name"], request.path_params["verb"]
        back = f"/agents/{quote(name)}" if is_agent_name(name) else "/"
        if verb not in ("suspend", "resume", "rollback", "kill", "reconcile"):
            return self._answer(request, NotFound(f"no action {verb!r}"), back)
        req: dict[str, Any] = {"cmd": verb, "name": name}
        if verb == "rollback":
            req["rev"] = fields.get("rev", "")
        return await self._run(request, req, back)

    async def _run(self, request: Request, req: dict[str, Any], back: str) -> Response:
        try:
            answer = await self.admin(req)
        except HiveError as e:
            return self._answer(request, e, back)
        self.bus.publish()
        return self._answer(request, None, back, answer)

    def _answer(
        self,
        request: Request,
        error: HiveError | None,
        back: str,
        answer: dict[str, Any] | None = None,
    ) -> Response:
        message = _describe(error, answer)
        if is_fetch(request):
            if error is not None:
                status = STATUS_CODES.get(error.code, 400)
                return JSONResponse({"ok": False, "error": error.to_json()}, status, HEADERS)
            return JSONResponse({"ok": True, "message": message, **(answer or {})}, 200, HEADERS)
        return RedirectResponse(f"{back}?msg={quote(message)}", 303, HEADERS)

    # --- streams ------------------------------------------------------------------
    async def status_events(self, request: Request) -> Response:
        return StreamingResponse(self.bus.frames(), media_type="text/event-stream", headers=HEADERS)

    async def flow_stream(self, request: Request) -> Response:
        last = request.headers.get("last-event-id")
        if last is not None and not last.isdigit():
            last = None

        async def frames() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n\n"
            async for ev in self.broker.follow(last):
                yield b": ping\n\n" if ev is None else ev.frame()

        return StreamingResponse(frames(), media_type="text/event-stream", headers=HEADERS)

    # --- login and health -----------------------------------------------------------
    async def login(self, request: Request) -> Response:
        has_password = self.auth.password is not None
        if request.method == "GET":
            return HTMLResponse(pages.login_page(password=has_password), headers=HEADERS)
        now = time.monotonic()
        while self.failures and self.failures[0] < now - LOCKOUT_SECONDS:
            self.failures.popleft()
        if len(self.failures) >= MAX_FAILURES:
            message = f"too many wrong secrets; try again in {LOCKOUT_SECONDS:.0f} s"
            return HTMLResponse(pages.login_page(message, password=has_password), 429, HEADERS)
        form = await request.form(max_files=0, max_fields=5)
        secret = form.get("secret")
        if isinstance(secret, str) and (
            self.auth.token_ok(secret) or self.auth.password_ok(secret)
        ):
            response = RedirectResponse("/", 303, HEADERS)
            self.auth.set_cookie(response)
            return response
        self.failures.append(now)
        return HTMLResponse(pages.login_page("wrong secret", password=has_password), 403, HEADERS)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})


def _describe(error: HiveError | None, answer: dict[str, Any] | None) -> str:
    if error is not None:
        return f"✕ {error.message}"
    approval = (answer or {}).get("approval")
    if isinstance(approval, dict):
        note = f": {approval.get('note')}" if approval.get("note") else ""
        return f"◆ approval {approval.get('id')} {approval.get('status')}{note}"
    return "◆ done"

"""The agent's web UI on ``/run/hive/web.sock``: transcript over SSE, login, status.

The operator reaches it only through c0re's proxy (DESIGN §10), which
strips cookies, so CSRF tokens here are stateless: an HMAC of a timestamp
under a per-process secret, checked on every POST together with ``Origin``.
The send box posts to ``send``, which c0re's proxy serves (it sends from
``operator`` through the broker's control socket); the harness has no
``/send`` because an agent cannot send as the operator. When the proxy
passes its own form token in ``X-Hive-Csrf``, every form carries that one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from html import escape
from importlib import resources
from string import Template

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hyperhive.harness.agent_config import AgentConfig
from hyperhive.harness.events import TURN_END, TURN_START, EventLog
from hyperhive.harness.login import LoginFlow
from hyperhive.harness.status import StatusFile
from hyperhive.harness.transcript import render, status_line

CSRF_MAX_AGE = 12 * 3600
PING_SECONDS = 15
LOGIN_WAIT = 5.0
PROXY_CSRF_HEADER = "x-hive-csrf"


def _template(name: str) -> Template:
    return Template(resources.files("hyperhive.harness").joinpath("templates", name).read_text())


class Csrf:
    """Stateless tokens: ``<unix time>.<hmac>``; valid for :data:`CSRF_MAX_AGE`."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def token(self) -> str:
        stamp = str(int(time.time()))
        return f"{stamp}.{self._mac(stamp)}"

    def valid(self, token: object) -> bool:
        if not isinstance(token, str) or "." not in token:
            return False
        stamp, mac = token.split(".", 1)
        if not stamp.isdigit() or time.time() - int(stamp) > CSRF_MAX_AGE:
            return False
        return hmac.compare_digest(mac, self._mac(stamp))


def _same_origin(request: Request) -> bool:
    """A browser's cross-site POST carries a foreign Origin; tools without one pass."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


class WebUI:
    def __init__(
        self,
        cfg: AgentConfig,
        events: EventLog,
        status: StatusFile,
        login: LoginFlow,
        *,
        csrf: Csrf | None = None,
    ) -> None:
        self.cfg = cfg
        self.events = events
        self.status = status
        self.login = login
        self.csrf = csrf or Csrf()
        self.shutdown = asyncio.Event()
        static = resources.files("hyperhive.harness").joinpath("static")
        self.app = Starlette(
            routes=[
                Route("/", self.page),
                Route("/events", self.stream),
                Route("/status.json", self.status_json),
                Route("/login", self.login_page, methods=["GET"]),
                Route("/login", self.login_post, methods=["POST"]),
                Mount("/static", app=StaticFiles(directory=str(static)), name="static"),
            ]
        )

    def _form_token(self, request: Request) -> str:
        """c0re's per-agent token when proxied (so its send box accepts it), else ours."""
        return request.headers.get(PROXY_CSRF_HEADER) or self.csrf.token()

    def _csrf_ok(self, request: Request, token: object) -> bool:
        """Through c0re (it strips a client's ``X-Hive-Csrf`` and sets its own, and drops
        ``Host``): the form must carry that token or ours. Direct: ours, same origin."""
        proxied = request.headers.get(PROXY_CSRF_HEADER)
        if proxied is not None:
            matches = isinstance(token, str) and hmac.compare_digest(token, proxied)
            return matches or self.csrf.valid(token)
        return _same_origin(request) and self.csrf.valid(token)

    def _status(self) -> str:
        return status_line(self.status.status, self.login.state.phase)

    async def page(self, request: Request) -> Response:
        send_csrf = self._form_token(request)
        logged_in = self.status.status.logged_in
        html = _template("page.html").substitute(
            name=escape(self.cfg.name),
            role=escape(self.cfg.role),
            status=self._status(),
            send_csrf=escape(send_csrf, quote=True),
            login_link="" if logged_in else '<a href="login">log in ⟶</a>',
        )
        return HTMLResponse(html)

    async def status_json(self, request: Request) -> Response:
        return JSONResponse(
            {
                "name": self.cfg.name,
                **asdict(self.status.status),
                "login": self.login.state.to_json(),
            }
        )

    async def stream(self, request: Request) -> Response:
        header = request.headers.get("last-event-id", "").strip()
        last_id = int(header) if header.isdigit() else None
        return EventSourceResponse(self._sse(last_id), ping=PING_SECONDS)

    async def _sse(self, last_id: int | None) -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(self._status(), event="status")
        follow = self.events.follow(last_id)
        stop = asyncio.ensure_future(self.shutdown.wait())
        try:
            while True:
                nxt = asyncio.ensure_future(anext(follow))
                done, _ = await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await nxt
                    return
                try:
                    event = nxt.result()
                except StopAsyncIteration:
                    return
                yield ServerSentEvent(render(event), event="hive", id=str(event.id))
                if event.kind in (TURN_START, TURN_END):
                    yield ServerSentEvent(self._status(), event="status")
        finally:
            stop.cancel()
            await follow.aclose()

    # --- login ----------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        state = self.login.state
        token = escape(self._form_token(request), quote=True)
        refresh = ""
        message = f'<p class="error">{escape(state.error)}</p>' if state.error else ""
        if self.status.status.logged_in:
            body = "<p>Logged in. The turn loop is running.</p>"
        elif state.phase in ("starting", "checking"):
            refresh = '<meta http-equiv="refresh" content="1">'
            doing = (
                "starting claude auth login" if state.phase == "starting" else "checking the code"
            )
            body = f"<p>{doing} …</p>"
        elif state.phase == "waiting_code" and state.url:
            url = escape(state.url, quote=True)
            body = (
                f'<p>1. Open <a id="login-url" href="{url}" target="_blank" rel="noopener">'
                f"{url}</a>"
                " and sign in.</p><p>2. Paste the code it shows:</p>"
                '<form method="post" action="login">'
                f'<input type="hidden" name="csrf" value="{token}">'
                '<input type="text" name="code" autocomplete="off" required> '
                "<button type=submit>submit code</button></form>"
            )
        else:
            body = (
                "<p>This agent has no Claude credentials yet.</p>"
                '<form method="post" action="login">'
                f'<input type="hidden" name="csrf" value="{token}">'
                '<input type="hidden" name="action" value="start">'
                "<button type=submit>start claude auth login</button></form>"
            )
        html = _template("login.html").substitute(
            name=escape(self.cfg.name),
            phase=escape(state.phase),
            message=message,
            body=body,
            refresh=refresh,
        )
        return HTMLResponse(html)

    async def login_post(self, request: Request) -> Response:
        form = await request.form()
        if not self._csrf_ok(request, form.get("csrf")):
            return HTMLResponse("<p>stale or missing form token; reload the page</p>", 403)
        code = form.get("code")
        if isinstance(code, str):
            await self.login.submit(code)
        else:
            await self.login.start()
        # Answer once the step settles (URL shown, code judged), so the page shows it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOGIN_WAIT):
                while self.login.state.phase in ("starting", "checking"):
                    await self.login.state.changed.wait()
        return RedirectResponse("login", status_code=303)

"""The operator session, shared by the dashboard and every agent web-UI listener.

Agents share the host's network, so loopback is not trust and cookies do not
separate ports (DESIGN §10 "Operator access"). The operator proves who they
are with the token in ``RUN/operator.token`` (``?token=`` on any c0re
listener) or, when ``[dashboard] password_file`` is set, with that password
on ``/login``. Either becomes an HttpOnly, SameSite=Strict session cookie.

The cookie value and the CSRF token are HMACs of the operator token, so they
survive a c0re restart and are revoked by rotating the token. The CSRF token
rides in a hidden form field: a page of another origin (an agent's UI on
another port is same-site, so the cookie alone proves nothing) cannot read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hyperhive.errors import HiveError

COOKIE = "hive_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Headers that keep operator pages out of frames and any URL out of other origins' Referer.
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    # Not no-referrer: with it Chromium sends ``Origin: null`` on a same-origin form POST.
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


class AuthConfigError(HiveError):
    code = "bad_config"


def ensure_token(path: Path) -> str:
    """Read the operator token, creating it (0600) when missing, as ``up`` does."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_password(password_file: Path | None, host: str) -> str | None:
    """The operator password, if configured; checked before c0re starts anything."""
    password: str | None = None
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise AuthConfigError(
                f"cannot read dashboard password_file {password_file}: {e.strerror}"
            ) from e
        if not password:
            raise AuthConfigError(f"dashboard password_file {password_file} is empty")
    if not is_loopback(host) and password is None:
        raise AuthConfigError(
            f"refusing to listen on non-loopback address {host!r} without [dashboard] password_file"
        )
    return password


class OperatorAuth:
    """The operator's secrets. With ``token_path`` the token follows the file: ``up``
    (re)writes it after c0re started, and rotating it revokes every session at once."""

    def __init__(
        self, token: str, password: str | None = None, *, token_path: Path | None = None
    ) -> None:
        self._token = token
        self.password = password
        self.token_path = token_path
        self._stamp: tuple[int, int, int] | None = None

    @classmethod
    def load(cls, token_path: Path, password_file: Path | None, host: str) -> OperatorAuth:
        """Refuse a non-loopback bind without a password: the token URL is not a login."""
        password = load_password(password_file, host)
        return cls(ensure_token(token_path), password, token_path=token_path)

    @property
    def token(self) -> str:
        if self.token_path is None:
            return self._token
        try:
            st = self.token_path.stat()
        except OSError:
            return self._token  # keep the last good token rather than lock the operator out
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            with contextlib.suppress(OSError):
                value = self.token_path.read_text(encoding="utf-8").strip()
                if value:
                    self._token = value
            self._stamp = stamp
        return self._token

    def _mac(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    @property
    def session(self) -> str:
        return self._mac("hyperhive-session-v1")

    @property
    def csrf(self) -> str:
        """The dashboard's CSRF token; never handed to an agent."""
        return self._mac("hyperhive-csrf-v1")

    def agent_csrf(self, agent: str) -> str:
        """The token of one agent's send box. The harness renders it, so the agent knows
        it: it is good for that agent's ``POST send`` and for nothing on the dashboard."""
        return self._mac(f"hyperhive-csrf-v1:agent:{agent}")

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def password_ok(self, given: str) -> bool:
        return self.password is not None and hmac.compare_digest(
            given.encode(), self.password.encode()
        )

    def csrf_ok(self, given: object, expected: str | None = None) -> bool:
        want = self.csrf if expected is None else expected
        return isinstance(given, str) and hmac.compare_digest(given.encode(), want.encode())

    def has_session(self, headers: Headers) -> bool:
        raw = headers.get("cookie", "")
        if not raw:
            return False
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:  # a hostile cookie header is just no session
            return False
        morsel = jar.get(COOKIE)
        return morsel is not None and hmac.compare_digest(
            morsel.value.encode(), self.session.encode()
        )

    def set_cookie(self, response: Response) -> None:
        response.set_cookie(COOKIE, self.session, httponly=True, samesite="strict", path="/")


def same_origin(scope: Scope, headers: Headers) -> bool:
    """A browser names the page that sent a POST in ``Origin``; another port is another
    origin (an agent's UI). No header (a CLI client) is left to the CSRF token."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return origin == f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"


def forbidden(message: str) -> Response:
    body = {"ok": False, "error": {"code": "forbidden", "message": message}}
    return JSONResponse(body, status_code=403, headers=SECURITY_HEADERS)


def unauthorized(login: bool) -> Response:
    hint = (
        '<a href="/login">log in</a>'
        if login
        else "open the URL <code>hive-c0re up</code> printed (it ends in <code>?token=…</code>)"
    )
    body = (
        "<!doctype html><meta charset=utf-8><title>hyperhive: not logged in</title>"
        '<body style="background:#0b0b10;color:#39ff14;font-family:monospace;padding:2em">'
        f"<h1>✕ n0t l0gged 1n</h1><p>This is an operator page: {hint}.</p></body>"
    )
    return HTMLResponse(body, status_code=401, headers=SECURITY_HEADERS)


class OperatorGate:
    """ASGI middleware: ``?token=`` → session cookie; no session → 401 (or /login)."""

    def __init__(
        self,
        app: ASGIApp,
        auth: OperatorAuth,
        *,
        open_paths: Iterable[str] = ("/healthz",),
        open_prefixes: Iterable[str] = (),
        login_path: str | None = None,
    ) -> None:
        self.app = app
        self.auth = auth
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = tuple(open_prefixes)
        self.login_path = login_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in self.open_paths or path.startswith(self.open_prefixes):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        token = next((v for k, v in query if k == "token"), None)
        if token is not None:
            if not self.auth.token_ok(token):
                await unauthorized(self.login_path is not None)(scope, receive, send)
                return
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            target = path + (f"?{rest}" if rest else "")
            redirect = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
            self.auth.set_cookie(redirect)
            await redirect(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] not in SAFE_METHODS and not same_origin(scope, headers):
            await forbidden("cross-origin request refused")(scope, receive, send)
            return
        if self.auth.has_session(headers):
            await self.app(scope, receive, send)
            return
        response: Response
        if self.login_path is not None and scope["method"] == "GET":
            response = RedirectResponse(self.login_path, status_code=303)
        else:
            response = unauthorized(self.login_path is not None)
        await response(scope, receive, send)

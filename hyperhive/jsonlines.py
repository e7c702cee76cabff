"""JSON-lines over unix sockets: ``host.sock`` and ``c0re.sock`` (DESIGN §7).

One request object per line, one response line per request. A malformed line
gets an error line and the connection stays usable; a handler's
:class:`~hyperhive.errors.HiveError` becomes ``{"ok": false, "error": …}``;
anything else is logged and reported as ``internal`` without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hyperhive.errors import HiveError

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Unreachable(HiveError):
    """The daemon's socket is missing or refuses connections."""

    code = "unreachable"


def error_line(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


async def answer(handler: Handler, raw: bytes) -> dict[str, Any]:
    """Turn one raw line into one response object; never raises."""
    try:
        req = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return error_line("bad_request", f"malformed JSON line: {e}")
    if not isinstance(req, dict):
        return error_line("bad_request", "a request must be a JSON object")
    if not isinstance(req.get("cmd"), str):
        return error_line("bad_request", "a request needs a string field 'cmd'")
    try:
        resp = await handler(req)
    except HiveError as e:
        return {"ok": False, "error": e.to_json()}
    except Exception:
        log.exception("handler failed for cmd %r", req.get("cmd"))
        return error_line("internal", "internal error; see the daemon's log")
    return {"ok": True, **resp}


async def _serve_connection(
    handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                if not e.partial.strip():
                    return
                raw = e.partial
            except asyncio.LimitOverrunError:
                writer.write(encode(error_line("too_large", f"line longer than {MAX_LINE} bytes")))
                await writer.drain()
                return
            if not raw.strip():
                continue
            writer.write(encode(await answer(handler, raw)))
            await writer.drain()
    except (ConnectionError, BrokenPipeError):
        return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await writer.wait_closed()


async def serve(path: Path, handler: Handler, *, mode: int = 0o600) -> asyncio.Server:
    """Listen on ``path`` (replacing a stale socket) with permissions ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: _serve_connection(handler, r, w), path=str(path), limit=MAX_LINE
        )
    finally:
        os.umask(old)
    path.chmod(mode)
    return server


async def request(path: Path, obj: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """Send one request and return the response object (``ok`` true or false)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_LINE), timeout
        )
    except (OSError, TimeoutError) as e:
        raise Unreachable(f"cannot connect to {path}: {e}") from e
    try:
        writer.write(encode(obj))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not line:
        raise Unreachable(f"{path} closed the connection without an answer")
    resp: dict[str, Any] = json.loads(line)
    return resp


def request_sync(path: Path, obj: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """Blocking twin of :func:`request` for command-line clients."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except OSError as e:
            raise Unreachable(f"cannot connect to {path}: {e.strerror or e}") from e
        sock.sendall(encode(obj))
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        sock.close()
    if not buf:
        raise Unreachable(f"{path} closed the connection without an answer")
    resp: dict[str, Any] = json.loads(buf)
    return resp

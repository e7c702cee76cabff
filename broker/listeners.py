"""One uvicorn server per socket, all in one process and one event loop.

uvicorn binds a fixed socket list when it starts, so a mailbox opened later
needs its own server. Each :class:`Listener` binds its unix socket itself
(0600 from the first instant, via the umask), runs a uvicorn ``Server`` on it
as a task of the daemon's TaskGroup, and on stop removes the socket file —
only if it is still the one it bound (same inode), never someone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


class JsonErrorsProtocol(HttpToolsProtocol):
    """httptools, but a request that is not even valid HTTP also gets a JSON error body."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": {"code": "bad_request", "message": msg}}).encode()
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the daemon and idles on an event."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stopped = asyncio.Event()
        self.on_started: Callable[[], object] = lambda: None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        self.on_started()
        # Headers are fixed (no Date header), so one tick sets them for good;
        # the stock loop would wake every 100 ms per server.
        await self.on_tick(0)
        await self.stopped.wait()


def bind_unix(path: Path) -> tuple[socket.socket, int]:
    """A listening socket at ``path`` (replacing a stale one); returns it and its inode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    path.chmod(0o600)
    sock.listen(1024)
    sock.setblocking(False)
    return sock, path.stat().st_ino


class Listener:
    def __init__(self, path: Path, app: ASGIApp, name: str) -> None:
        self.path = path
        self.name = name
        config = uvicorn.Config(
            app,
            loop="uvloop",
            http=JsonErrorsProtocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            date_header=False,
            server_header=False,
            timeout_graceful_shutdown=5,
            timeout_keep_alive=75,
        )
        self.server = _EmbeddedServer(config)
        self.sock: socket.socket | None = None
        self.inode = 0
        self.done = asyncio.Event()
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(self, started: asyncio.Future[None]) -> None:
        """Serve until :meth:`stop`; resolves ``started`` once accepting."""

        def accepting() -> None:
            if not started.done():
                started.set_result(None)

        try:
            self.sock, self.inode = bind_unix(self.path)
            self.server.on_started = accepting
            await self.server.serve(sockets=[self.sock])
        except Exception as e:
            if not started.done():
                started.set_exception(e)
            log.exception("listener %s failed", self.name)
        finally:
            if not started.done():
                started.set_exception(RuntimeError(f"listener {self.name} stopped early"))
            self.remove_socket()
            self.done.set()

    async def stop(self) -> None:
        self.server.should_exit = True
        self.server.stopped.set()
        await self.done.wait()

    def remove_socket(self) -> None:
        with contextlib.suppress(OSError):
            if self.inode and self.path.stat().st_ino == self.inode:
                self.path.unlink()

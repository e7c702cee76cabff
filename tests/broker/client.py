"""Test-side clients for hive-broker: a typed httpx helper, a lean raw client, a process.

``BrokerClient`` wraps httpx over a unix socket for readable tests.
``RawClient`` speaks minimal HTTP/1.1 keep-alive over asyncio streams, for
the tests that push thousands of requests (httpx would measure itself).
``BrokerProcess`` runs the real ``hive-broker serve`` in its own process
group and stops it with SIGTERM (or SIGKILL for crash tests), always reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hyperhive.paths import Paths
from tests.polling import until, wait_until

HIVE_BROKER = str(Path(sys.executable).parent / "hive-broker")


@dataclass
class Reply:
    status: int
    data: Any

    @property
    def error_code(self) -> str:
        code = self.data["error"]["code"]
        assert isinstance(code, str)
        return code


class BrokerClient:
    """One socket (control or a mailbox), JSON in and out."""

    def __init__(self, sock: Path, timeout: float = 10.0) -> None:
        self.sock = sock
        self.http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(sock)),
            base_url="http://broker",
            timeout=timeout,
        )

    async def __aenter__(self) -> BrokerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if content is None and body is not None:
            content = json.dumps(body).encode()
        r = await self.http.request(method, path, content=content, params=params, headers=headers)
        data = r.json() if r.content else None
        return Reply(r.status_code, data)

    # agent socket
    async def send(self, to: str, body: str, key: str | None = None) -> Reply:
        req: dict[str, Any] = {"to": to, "body": body}
        if key is not None:
            req["key"] = key
        return await self.call("POST", "/send", req)

    async def recv(self, wait: float = 0) -> Reply:
        return await self.call("GET", "/recv", params={"wait": wait})

    async def ack(self, mid: int) -> Reply:
        return await self.call("POST", "/ack", {"id": mid})

    async def nack(self, mid: int) -> Reply:
        return await self.call("POST", "/nack", {"id": mid})

    async def renew(self, mid: int) -> Reply:
        return await self.call("POST", "/renew", {"id": mid})

    # control socket
    async def open(self, name: str) -> Reply:
        return await self.call("PUT", f"/mailboxes/{name}")

    async def close(self, name: str) -> Reply:
        return await self.call("DELETE", f"/mailboxes/{name}")

    async def post(self, sender: str, to: str, body: str, key: str | None = None) -> Reply:
        req: dict[str, Any] = {"from": sender, "to": to, "body": body}
        if key is not None:
            req["key"] = key
        return await self.call("POST", "/send", req)

    async def messages(self, **params: Any) -> list[dict[str, Any]]:
        r = await self.call("GET", "/messages", params=params)
        assert r.status == 200, r
        out: list[dict[str, Any]] = r.data["messages"]
        return out


async def until_waiting(control: BrokerClient, mailbox: str, timeout: float = 5.0) -> None:
    """Until a ``recv`` long-poll is parked on ``mailbox``: only ``/stats`` tells."""

    async def parked() -> bool:
        r = await control.call("GET", "/stats")
        return bool(r.data["mailboxes"].get(mailbox, {}).get("waiting", 0) > 0)

    await until(parked, f"a recv waiting on {mailbox}", timeout=timeout)


class RawClient:
    """Minimal HTTP/1.1 keep-alive over a unix socket; JSON bodies with Content-Length."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_unix_connection(str(self.sock))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One round trip; raises OSError/IncompleteReadError when the broker is gone."""
        if self.writer is None:
            await self.connect()
        assert self.reader is not None
        assert self.writer is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nhost: b\r\ncontent-length: {len(payload)}\r\n"
        if payload:
            head += "content-type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        if not status_line:
            raise ConnectionResetError("closed")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(data) if data else None)


class BrokerProcess:
    """The real ``hive-broker serve --home DIR`` in its own process group."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.paths = Paths.from_home(home)
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "broker.log"

    def start(self, timeout: float = 15.0) -> BrokerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [HIVE_BROKER, "serve", "--home", str(self.home), *self.args],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"broker exited early:\n{self.log.read_text()}")
            return self.healthy()

        wait_until(ready, "the broker to be ready", timeout=timeout, explain=self.log.read_text)
        return self

    def healthy(self) -> bool:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.paths.broker_sock))) as c:
                return c.get("http://broker/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait; SIGKILL the group if it hangs. Returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.wait()

    def kill(self) -> None:
        """``kill -9`` the whole group, as a crash would."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

"""The dashboard's link to hive-broker's control socket: send, and the live flow.

``GET /flow/stream`` relays the broker's ``GET /stream`` SSE to the browser,
frame by frame with the broker's own event ids, so the browser's
``Last-Event-ID`` after a reconnect is a broker cursor. When the broker goes
away (a restart) the relay keeps the browser's stream open, retries, and
resumes from the last id it relayed: nothing sent meanwhile is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hyperhive.errors import HiveError

log = logging.getLogger(__name__)

#: Events replayed to a page that opens the flow without a cursor.
BACKLOG = 200
RETRY_MIN, RETRY_MAX = 0.1, 2.0


class BrokerDown(HiveError):
    code = "broker_unreachable"


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str
    data: str

    def frame(self) -> bytes:
        head = f"id: {self.id}\n" if self.id is not None else ""
        data = "".join(f"data: {line}\n" for line in self.data.split("\n"))
        return f"{head}event: {self.event}\n{data}\n".encode()


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent | None]:
    """SSE lines → events; ``None`` for a comment (a ping), so callers can pass it on."""
    eid: str | None = None
    event = "message"
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(eid, event, "\n".join(data))
            eid, event, data = None, "message", []
            continue
        if line.startswith(":"):
            yield None
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            eid = value
        elif field == "event":
            event = value
        elif field == "data":
            data.append(value)


class BrokerLink:
    """HTTP over the broker's control socket (``RUN/broker.sock``)."""

    def __init__(self, control_sock: Path, *, timeout: float = 10.0) -> None:
        self.control_sock = control_sock
        self.timeout = timeout

    def _client(self, timeout: httpx.Timeout | float) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.control_sock))
        return httpx.AsyncClient(transport=transport, base_url="http://broker", timeout=timeout)

    async def send(self, sender: str, to: str, body: str, key: str | None = None) -> int:
        """``POST /send`` as ``operator`` or ``system``; the broker's error becomes a HiveError."""
        payload: dict[str, str] = {"from": sender, "to": to, "body": body}
        if key is not None:
            payload["key"] = key
        try:
            async with self._client(self.timeout) as client:
                resp = await client.post("/send", json=payload)
        except httpx.HTTPError as e:
            raise BrokerDown(f"hive-broker is unreachable: {e}") from e
        data = _json(resp)
        if resp.status_code >= 400:
            raw = data.get("error")
            err: dict[str, Any] = raw if isinstance(raw, dict) else {}
            raise HiveError(
                str(err.get("message") or resp.text), code=str(err.get("code") or "broker_error")
            )
        return int(data.get("id", 0))

    async def last_event_id(self) -> int:
        try:
            async with self._client(self.timeout) as client:
                resp = await client.get("/healthz")
        except httpx.HTTPError as e:
            raise BrokerDown(f"hive-broker is unreachable: {e}") from e
        return int(_json(resp).get("last_event_id", 0))

    async def follow(self, last_id: str | None) -> AsyncIterator[SseEvent | None]:
        """Broker events from after ``last_id`` forever, reconnecting across restarts.

        Yields ``None`` as a keep-alive (broker pings, and each retry while it is
        down) and an ``event: link`` with data ``up``/``down`` when that changes.
        """
        delay = RETRY_MIN
        up: bool | None = None
        while True:
            if last_id is None:
                with contextlib.suppress(HiveError, ValueError):
                    last_id = str(max(0, await self.last_event_id() - BACKLOG))
            headers = {"Last-Event-ID": last_id} if last_id is not None else {}
            try:
                async with (
                    self._client(httpx.Timeout(self.timeout, read=None)) as client,
                    client.stream("GET", "/stream", headers=headers) as resp,
                ):
                    if resp.status_code == 200:
                        if up is not True:
                            up = True
                            yield SseEvent(None, "link", "up")
                        delay = RETRY_MIN
                        async for ev in parse_sse(resp.aiter_lines()):
                            if ev is not None and ev.id is not None:
                                last_id = ev.id
                            yield ev
                    else:
                        log.warning("broker GET /stream answered %d", resp.status_code)
            except (httpx.HTTPError, BrokerDown) as e:
                log.debug("broker stream lost: %s", e)
            if up is not False:
                up = False
                yield SseEvent(None, "link", "down")
            yield None
            await asyncio.sleep(delay)  # reconnect backoff while the broker is away
            delay = min(RETRY_MAX, delay * 2)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}

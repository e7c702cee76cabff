"""hive-broker's control socket, as c0re uses it: open/close mailboxes, send as operator.

HTTP/1.1 over ``RUN/broker.sock`` (DESIGN §7) with httpx's unix-socket
transport. c0re never opens broker.sqlite; everything goes through here. A
broker that is down or answers 5xx is a :class:`TemporaryError` (the pass
retries with backoff); a 4xx is a refusal the caller reports as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from hyperhive.errors import HiveError
from hyperhive.names import OPERATOR, mailbox_for_agent
from hyperhive.reconciler.runtimes.base import TemporaryError


class BrokerRefused(HiveError):
    code = "broker_refused"


class BrokerClient:
    """One long-lived httpx client per c0re process (opened and closed in its lifespan)."""

    def __init__(self, socket: Path, *, timeout: float = 10.0) -> None:
        self.socket = socket
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket)),
            base_url="http://broker",
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self, method: str, url: str, *, json: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            resp = await self._client.request(method, url, json=json)
        except httpx.HTTPError as e:
            raise TemporaryError(f"hive-broker unreachable at {self.socket}: {e}") from e
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if resp.status_code >= 500:
            raise TemporaryError(f"hive-broker {method} {url}: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            err = data.get("error")
            detail = err.get("message") if isinstance(err, dict) else None
            message = str(detail or f"HTTP {resp.status_code}")
            raise BrokerRefused(f"hive-broker refused {method} {url}: {message}")
        return data

    async def open_mailbox(self, agent: str) -> None:
        """Idempotent: the agent's mailbox (hm1nd: ``manager``) exists afterwards."""
        await self._call("PUT", f"/mailboxes/{mailbox_for_agent(agent)}")

    async def close_mailbox(self, agent: str, *, purge: bool = False) -> None:
        """Close the mailbox; ``purge`` also deletes its mail (destroy --purge)."""
        suffix = "?purge=1" if purge else ""
        await self._call("DELETE", f"/mailboxes/{mailbox_for_agent(agent)}{suffix}")

    async def send_as_operator(self, to: str, body: str) -> int:
        data = await self._call("POST", "/send", json={"from": OPERATOR, "to": to, "body": body})
        return int(data.get("id", 0))

    async def healthy(self) -> bool:
        try:
            await self._call("GET", "/healthz")
        except HiveError:
            return False
        return True

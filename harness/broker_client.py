"""The agent's side of its broker socket (DESIGN §7): send, recv, ack, nack, renew.

Identity is the socket path, so the client carries no name. Every broker
error becomes a :class:`BrokerError` carrying the broker's own message, which
the MCP tools hand back to the model verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hyperhive.errors import HiveError


class BrokerError(HiveError):
    code = "broker"


@dataclass(frozen=True)
class Message:
    id: int
    sender: str
    to: str
    body: str
    sent_at: str
    attempt: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        try:
            return cls(
                id=int(data["id"]),
                sender=str(data["from"]),
                to=str(data["to"]),
                body=str(data["body"]),
                sent_at=str(data.get("sent_at", "")),
                attempt=int(data.get("attempt", 1)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BrokerError(f"broker sent a malformed message: {e}") from e

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.to,
            "body": self.body,
            "sent_at": self.sent_at,
            "attempt": self.attempt,
        }


def _error_text(response: httpx.Response) -> str:
    """The broker's message: ``{"error": {"code", "message"}}`` or whatever it sent."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        code, message = err.get("code", ""), err.get("message", "")
        return f"{code}: {message}" if code else str(message)
    if isinstance(err, str):
        return err
    return str(data)


class BrokerClient:
    """One keep-alive HTTP connection pool to ``broker.sock``."""

    def __init__(self, socket_path: Path, *, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
            base_url="http://broker",
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method, path, json=json, timeout=timeout or self._timeout
            )
        except httpx.TransportError as e:
            raise BrokerError(f"broker unreachable at {self.socket_path}: {e}") from e
        if response.status_code >= 400:
            raise BrokerError(_error_text(response))
        return response

    async def send(self, to: str, body: str, key: str | None = None) -> int:
        payload: dict[str, Any] = {"to": to, "body": body}
        if key is not None:
            payload["key"] = key
        response = await self._call("POST", "/send", json=payload)
        return int(response.json()["id"])

    async def recv(self, wait: float) -> Message | None:
        """Lease one message, long-polling up to ``wait`` seconds; ``None`` when none came."""
        response = await self._call("GET", f"/recv?wait={wait:g}", timeout=wait + self._timeout)
        if response.status_code == 204:
            return None
        return Message.from_json(response.json())

    async def ack(self, message_id: int) -> None:
        await self._call("POST", "/ack", json={"id": message_id})

    async def nack(self, message_id: int) -> None:
        await self._call("POST", "/nack", json={"id": message_id})

    async def renew(self, message_id: int) -> None:
        await self._call("POST", "/renew", json={"id": message_id})

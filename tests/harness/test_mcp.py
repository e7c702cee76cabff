"""The hive MCP tools against a real broker and a test c0re.sock, three ways:
in-process, through the byte relay to the harness-side socket server, and as
the per-turn ``hive-ag3nt mcp --direct`` server."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult, TextContent

from hyperhive import jsonlines
from hyperhive.errors import Conflict
from hyperhive.harness.broker_client import BrokerClient
from hyperhive.harness.mcp_socket import serve_mcp
from hyperhive.harness.mcp_tools import HiveTools, build_server
from tests.harness.hive import Broker

BIN = Path(sys.executable).parent


def _text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


class C0re:
    """A jsonlines c0re.sock that records requests and answers like c0re would."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        if request.get("sha") == "dead":
            raise Conflict("commit dead touches files outside agent folders")
        return {"id": 7} if request["cmd"] != "kill" else {}


@pytest.fixture
async def c0re(broker: Broker) -> AsyncIterator[tuple[C0re, Path]]:
    sock = broker.open_mailbox("manager") / "c0re.sock"
    fake = C0re()
    server = await jsonlines.serve(sock, fake.handle)
    yield fake, sock
    server.close()
    await server.wait_closed()


async def test_agent_tools_send_and_recv_through_the_broker(broker: Broker) -> None:
    alice = BrokerClient(broker.open_mailbox("alice") / "broker.sock")
    broker.open_mailbox("bob")
    try:
        async with Client(build_server(HiveTools(alice))) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"send", "recv"}
            assert tools["send"].input_schema["required"] == ["to", "body"]
            assert "operator" in tools["send"].input_schema["properties"]["to"]["description"]

            sent = await client.call_tool("send", {"to": "bob", "body": "hi bob"})
            assert not sent.is_error
            message_id = json.loads(_text(sent))["id"]
            assert [m["id"] for m in broker.messages("bob") if m["to"] == "bob"] == [message_id]

            bad = await client.call_tool("send", {"to": "no such!", "body": "x"})
            assert (
                bad.is_error
                and "send to 'no such!' failed: not_found: unknown recipient" in _text(bad)
            )

            empty = await client.call_tool("recv", {"wait_seconds": 0})
            assert json.loads(_text(empty))["message"] is None
            broker.send("alice", "for alice")
            got = json.loads(_text(await client.call_tool("recv", {"wait_seconds": 5})))
            assert got["message"]["body"] == "for alice" and got["message"]["from"] == "operator"
            # recv acked it: nothing is left to lease
            assert await alice.recv(0) is None

            too_long = await client.call_tool("recv", {"wait_seconds": 600})
            assert too_long.is_error
    finally:
        await alice.aclose()


async def test_manager_tools_reach_c0re_and_carry_its_errors(
    broker: Broker, c0re: tuple[C0re, Path]
) -> None:
    fake, sock = c0re
    manager = BrokerClient(sock.parent / "broker.sock")
    try:
        async with Client(build_server(HiveTools(manager, sock))) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"send", "recv", "request_apply_commit", "request_spawn", "kill"}

            ok = await client.call_tool("request_apply_commit", {"sha": "ABC1234"})
            assert json.loads(_text(ok)) == {"requested": True, "id": 7}
            refused = await client.call_tool("request_apply_commit", {"sha": "dead"})
            assert refused.is_error
            assert "conflict: commit dead touches files outside agent folders" in _text(refused)
            not_sha = await client.call_tool("request_apply_commit", {"sha": "HEAD; rm"})
            assert not_sha.is_error and "not a commit id" in _text(not_sha)

            spawn = {"role": "agent", "model": "haiku"}
            assert not (
                await client.call_tool("request_spawn", {"name": "carol", "spec": spawn})
            ).is_error
            bad_name = await client.call_tool("request_spawn", {"name": "../x", "spec": spawn})
            assert bad_name.is_error and "invalid agent name" in _text(bad_name)
            assert json.loads(_text(await client.call_tool("kill", {"name": "bob"}))) == {
                "killed": True
            }
            assert fake.requests == [
                {"cmd": "request_apply_commit", "sha": "abc1234"},
                {"cmd": "request_apply_commit", "sha": "dead"},
                {"cmd": "request_spawn", "name": "carol", "spec": spawn},
                {"cmd": "kill", "name": "bob"},
            ]
        sock.unlink()
        async with Client(build_server(HiveTools(manager, sock))) as client:
            gone = await client.call_tool("kill", {"name": "bob"})
            assert gone.is_error and "c0re unreachable" in _text(gone)
    finally:
        await manager.aclose()


def _env(state: Path, sockets: Path, agent: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HIVE_STATE_DIR": str(state),
        "HIVE_SOCKET_DIR": str(sockets),
        "HIVE_AGENT": agent,
    }


async def test_relay_and_direct_servers_speak_mcp_over_stdio(
    broker: Broker, tmp_path: Path
) -> None:
    sockets = broker.open_mailbox("alice")
    broker.open_mailbox("bob")
    alice = BrokerClient(sockets / "broker.sock")
    listener = await serve_mcp(build_server(HiveTools(alice)), tmp_path / "mcp.sock")
    try:
        for args in (["mcp"], ["mcp", "--direct"]):
            params = StdioServerParameters(
                command=str(BIN / "hive-ag3nt"), args=args, env=_env(tmp_path, sockets, "alice")
            )
            async with Client(params) as client:
                assert {t.name for t in (await client.list_tools()).tools} == {"send", "recv"}
                result = await client.call_tool("send", {"to": "bob", "body": " ".join(args)})
                assert not result.is_error, _text(result)
        assert [m["body"] for m in broker.messages("bob")] == ["mcp", "mcp --direct"]
    finally:
        listener.close()
        await listener.wait_closed()
        await alice.aclose()

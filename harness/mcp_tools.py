"""The ``hive`` MCP server: the tools claude uses to talk to the hive.

Every agent gets ``send`` and ``recv``; the manager (hm1nd) also gets the
lifecycle verbs that go to c0re over ``c0re.sock``. A broker or c0re refusal
comes back to the model as a tool error carrying that service's message, so
the model can correct itself; the server never crashes on one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from hyperhive import jsonlines
from hyperhive.errors import HiveError
from hyperhive.harness.broker_client import BrokerClient
from hyperhive.names import InvalidName, validate_agent_name

SERVER_NAME = "hive"
SHA_RE = re.compile(r"[0-9a-f]{4,64}")
MAX_BODY = 64 * 1024
MAX_WAIT = 60

INSTRUCTIONS = (
    "You are one agent of hyperhive. Other agents, the operator and the manager reach "
    "you only through the hive: you were woken because a message arrived. Answer by "
    "calling `send`; plain text in your reply is seen by nobody but the operator's log."
)


@dataclass(frozen=True)
class HiveTools:
    """What the tools need: the mailbox socket and, for the manager, c0re's socket."""

    broker: BrokerClient
    c0re_sock: Path | None = None


def build_server(tools: HiveTools) -> MCPServer[Any]:
    """The MCP server with the agent's tools (and the manager's, when ``c0re_sock`` is set)."""
    server: MCPServer[Any] = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(structured_output=False)
    async def send(
        to: Annotated[
            str,
            Field(
                description="Recipient mailbox: an agent name such as 'alice', 'manager' "
                "(the hive's manager agent hm1nd), or 'operator' (the human running the hive)."
            ),
        ],
        body: Annotated[
            str,
            Field(description="The message text, delivered verbatim.", max_length=MAX_BODY),
        ],
    ) -> str:
        """Send a message to another mailbox of the hive. This is the only way to answer
        whoever woke you: reply to the sender named in your wake-up message. Returns the
        new message's id."""
        try:
            message_id = await tools.broker.send(to, body)
        except HiveError as e:
            raise ToolError(f"send to {to!r} failed: {e.message}") from e
        return json.dumps({"sent": True, "id": message_id, "to": to})

    @server.tool(structured_output=False)
    async def recv(
        wait_seconds: Annotated[
            int,
            Field(
                description="How long to wait for a message when none is queued (0 = do not "
                "wait, at most 60).",
                ge=0,
                le=MAX_WAIT,
            ),
        ] = 0,
    ) -> str:
        """Take the next message waiting in your own mailbox, if any, and mark it handled.
        You do not need this to read the message that woke you: it is in your prompt.
        Returns the message as JSON (id, from, to, body, sent_at), or says the mailbox
        is empty."""
        try:
            message = await tools.broker.recv(wait_seconds)
            if message is None:
                return json.dumps({"message": None, "note": "no message waiting"})
            await tools.broker.ack(message.id)
        except HiveError as e:
            raise ToolError(f"recv failed: {e.message}") from e
        return json.dumps({"message": message.to_json()})

    if tools.c0re_sock is not None:
        _add_manager_tools(server, tools.c0re_sock)
    return server


async def _c0re(c0re_sock: Path, request: dict[str, Any]) -> dict[str, Any]:
    try:
        response = await jsonlines.request(c0re_sock, request)
    except HiveError as e:
        raise ToolError(f"c0re unreachable: {e.message}") from e
    except (OSError, ValueError) as e:
        raise ToolError(f"c0re unreachable: {e}") from e
    if not response.get("ok"):
        error = response.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        raise ToolError(f"c0re refused {request['cmd']}: {code or 'error'}: {message or error}")
    return {k: v for k, v in response.items() if k != "ok"}


def _agent_name(name: str) -> str:
    try:
        return validate_agent_name(name)
    except InvalidName as e:
        raise ToolError(e.message) from e


def _add_manager_tools(server: MCPServer[Any], c0re_sock: Path) -> None:
    @server.tool(structured_output=False)
    async def request_apply_commit(
        sha: Annotated[
            str,
            Field(
                description="Full or abbreviated hex id of your commit in /agents (the "
                "proposed repo), e.g. from `git rev-parse HEAD`."
            ),
        ],
    ) -> str:
        """Ask the operator to apply one of your commits in /agents to the hive. Commit
        your changes to agent folders first (one folder per agent, <name>/agent.yaml).
        Returns the approval id; the operator approves or denies it, and the outcome
        arrives later as a message from 'system'."""
        sha = sha.strip().lower()
        if SHA_RE.fullmatch(sha) is None:
            raise ToolError(f"not a commit id: {sha!r} (expected 4-64 hex digits)")
        answer = await _c0re(c0re_sock, {"cmd": "request_apply_commit", "sha": sha})
        return json.dumps({"requested": True, **answer})

    @server.tool(structured_output=False)
    async def request_spawn(
        name: Annotated[
            str,
            Field(description="The new agent's name: ^[a-z][a-z0-9-]{0,8}$, not yet in use."),
        ],
        spec: Annotated[
            dict[str, Any],
            Field(
                description='The agent\'s spec mapping as in agent.yaml, e.g. {"role": '
                '"agent", "model": "haiku", "systemPrompt": "You review code."}.'
            ),
        ],
    ) -> str:
        """Ask the operator to create a new agent. Returns the approval id; the outcome
        arrives later as a message from 'system'."""
        answer = await _c0re(
            c0re_sock, {"cmd": "request_spawn", "name": _agent_name(name), "spec": spec}
        )
        return json.dumps({"requested": True, **answer})

    @server.tool(structured_output=False)
    async def kill(
        name: Annotated[str, Field(description="The agent to stop, e.g. 'alice'.")],
    ) -> str:
        """Stop an agent at once and keep it stopped (suspended) until the operator
        resumes it. Use it for an agent that misbehaves or loops."""
        answer = await _c0re(c0re_sock, {"cmd": "kill", "name": _agent_name(name)})
        return json.dumps({"killed": True, **answer})

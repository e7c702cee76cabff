"""What the scripted model says: a pure function from a Messages API request to a reply.

The demo hive (``hive-c0re up --demo``) and every test run the real Claude Code
CLI against this script, so it reads the harness's wake prompt the way a model
would: who am I, who wrote, what did they write. The packaged script makes
alice and bob talk and stop; markers in a message body (``[fake:…]``) select
the failure modes tests need, so one fake process serves every test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# The wake prompt (see turn_loop.wake_prompt) carries these two lines.
WAKE_RE = re.compile(r"^You are (?P<me>[a-z][a-z0-9-]*), an agent of hyperhive\.", re.M)
FROM_RE = re.compile(r"^Message (?P<id>\d+) from (?P<sender>[a-z][a-z0-9-]*):$", re.M)
BODY_RE = re.compile(r"<<<BODY\n(?P<body>.*?)\nBODY>>>", re.S)
CALL_RE = re.compile(r"\[fake:call (?P<tool>[a-z_]+) (?P<args>\{.*?\})\]", re.S)
MARKER_RE = re.compile(r"\[fake:(?P<mode>[a-z0-9.-]+)\]")
SLOW_RE = re.compile(r"slow-(?P<seconds>\d+(?:\.\d+)?)")
ECHO_PREFIX = "echo: "
PROMPT_TOO_LONG = "prompt is too long: 250000 tokens > 200000 maximum"


@dataclass(frozen=True)
class ToolCall:
    tool: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """One model turn: text, or a tool call, or an HTTP error, or a stall."""

    text: str = ""
    call: ToolCall | None = None
    status: int = 200
    error_type: str = ""
    stall: bool = False
    delay: float = 0.0


@dataclass
class Script:
    """The scripted model. ``fired`` remembers ``-once`` markers already used."""

    fired: set[str] = field(default_factory=set)

    def reply(self, request: dict[str, Any]) -> Reply:
        messages = request.get("messages") or []
        last = messages[-1] if messages else {}
        if _has_tool_result(last):
            return Reply(text=_after_tool(last))
        prompt = _user_turn_text(messages)
        if "summary" in prompt.lower() and "conversation" in prompt.lower():
            return Reply(text="Summary: the agent was woken by hive messages and answered them.")
        error = self._marker_reply(prompt)
        if error is not None:
            return error
        wake = _parse_wake(prompt)
        if wake is None:
            return Reply(text="I am the hyperhive demo model; I only answer hive messages.")
        me, sender, body = wake
        call = CALL_RE.search(body)
        if call is not None:
            try:
                args = json.loads(call["args"])
            except json.JSONDecodeError:
                return Reply(text="The [fake:call] arguments are not JSON.")
            return Reply(call=ToolCall(call["tool"], args))
        return (
            Reply(call=_demo_turn(me, sender, body))
            if _should_send(sender, body)
            else Reply(text="Noted; nothing to answer.")
        )

    def _marker_reply(self, prompt: str) -> Reply | None:
        for m in MARKER_RE.finditer(prompt):
            mode = m["mode"]  # e.g. "error", "error-once", "error-once-t7" (a test's own key)
            base, once = mode.split("-once")[0], "-once" in mode
            if once and mode in self.fired:
                continue
            reply = _error_reply(base)
            if reply is None:
                continue
            if once:
                self.fired.add(mode)
            return reply
        return None


def _error_reply(mode: str) -> Reply | None:
    if mode == "error":
        return Reply(status=500, error_type="api_error", text="scripted internal error")
    if mode == "overloaded":
        return Reply(status=529, error_type="overloaded_error", text="scripted overload")
    if mode == "too-long":
        return Reply(status=400, error_type="invalid_request_error", text=PROMPT_TOO_LONG)
    if mode == "stall":
        return Reply(stall=True)
    if (slow := SLOW_RE.fullmatch(mode)) is not None:
        return Reply(delay=float(slow["seconds"]), text="Answered slowly.")
    return None


def _should_send(sender: str, body: str) -> bool:
    """Echoes are not echoed back, so two agents never loop forever."""
    return not (body.startswith(ECHO_PREFIX) or (sender != "operator" and body == "done"))


def _demo_turn(me: str, sender: str, body: str) -> ToolCall:
    """alice ← operator → bob; bob → alice; alice (from bob) → operator "done"; else echo."""
    if me == "alice" and sender == "operator":
        return ToolCall("send", {"to": "bob", "body": "hi bob, alice here. operator says: " + body})
    if me == "bob" and sender == "alice":
        return ToolCall("send", {"to": "alice", "body": "hi alice, bob here. got your message."})
    if me == "alice" and sender == "bob":
        return ToolCall("send", {"to": "operator", "body": "done"})
    return ToolCall("send", {"to": sender, "body": ECHO_PREFIX + body[:200]})


def _parse_wake(prompt: str) -> tuple[str, str, str] | None:
    me, sender, body = WAKE_RE.search(prompt), FROM_RE.search(prompt), BODY_RE.search(prompt)
    if me is None or sender is None or body is None:
        return None
    return me["me"], sender["sender"], body["body"]


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _user_turn_text(messages: list[Any]) -> str:
    """The text of every user message since the model last spoke: the CLI may
    append its own message (role user or system: agent types, skills) after
    the wake prompt."""
    texts: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "system"):
            break
        if message["role"] == "user":
            texts.append(_text_of(message))
    return "\n".join(reversed(texts))


def _text_of(message: dict[str, Any]) -> str:
    return "\n".join(str(b.get("text", "")) for b in _blocks(message) if b.get("type") == "text")


def _has_tool_result(message: dict[str, Any]) -> bool:
    return any(b.get("type") == "tool_result" for b in _blocks(message))


def _after_tool(message: dict[str, Any]) -> str:
    for b in _blocks(message):
        if b.get("type") == "tool_result":
            content = b.get("content")
            if isinstance(content, list):
                text = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
            else:
                text = str(content or "")
            if b.get("is_error"):
                return "The tool failed: " + text[:300]
            return "Done: " + text[:300]
    return "Done."

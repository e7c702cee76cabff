"""The scripted model's decisions, as a table: request in, reply out."""

from __future__ import annotations

from typing import Any

import pytest

from hyperhive.harness.demo_script import Script, ToolCall


def wake(me: str, sender: str, body: str) -> dict[str, Any]:
    text = (
        f"You are {me}, an agent of hyperhive.\n"
        f"Message 3 from {sender}:\n<<<BODY\n{body}\nBODY>>>\n"
    )
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}


@pytest.mark.parametrize(
    ("me", "sender", "body", "call"),
    [
        (
            "alice",
            "operator",
            "hi",
            ToolCall("send", {"to": "bob", "body": "hi bob, alice here. operator says: hi"}),
        ),
        (
            "bob",
            "alice",
            "x",
            ToolCall("send", {"to": "alice", "body": "hi alice, bob here. got your message."}),
        ),
        ("alice", "bob", "y", ToolCall("send", {"to": "operator", "body": "done"})),
        ("carol", "operator", "ping", ToolCall("send", {"to": "operator", "body": "echo: ping"})),
        ("carol", "dave", "echo: ping", None),
        (
            "hm1nd",
            "operator",
            '[fake:call kill {"name": "bob"}]',
            ToolCall("kill", {"name": "bob"}),
        ),
    ],
)
def test_demo_conversation(me: str, sender: str, body: str, call: ToolCall | None) -> None:
    reply = Script().reply(wake(me, sender, body))
    assert reply.call == call
    assert reply.status == 200


def test_markers_select_failures_and_once_markers_fire_once() -> None:
    script = Script()
    assert script.reply(wake("bob", "operator", "[fake:error] x")).status == 500
    assert script.reply(wake("bob", "operator", "[fake:overloaded] x")).status == 529
    assert script.reply(wake("bob", "operator", "[fake:stall] x")).stall
    once = wake("bob", "operator", "[fake:too-long-once-t] x")
    first = script.reply(once)
    assert first.status == 400 and "prompt is too long" in first.text
    assert script.reply(once).call == ToolCall(
        "send", {"to": "operator", "body": "echo: [fake:too-long-once-t] x"}
    )


def test_after_a_tool_result_the_turn_ends_with_text() -> None:
    result = {"type": "tool_result", "content": [{"type": "text", "text": '{"sent": true}'}]}
    reply = Script().reply({"messages": [{"role": "user", "content": [result]}]})
    assert reply.call is None and reply.text == 'Done: {"sent": true}'
    failed = {**result, "is_error": True}
    assert (
        Script()
        .reply({"messages": [{"role": "user", "content": [failed]}]})
        .text.startswith("The tool failed")
    )
    assert Script().reply({"messages": [{"role": "user", "content": "hello"}]}).call is None


def test_a_user_message_the_cli_appends_after_the_wake_prompt_is_read_past() -> None:
    """claude 2.1.197 may add its own message (agent types, skills) after ours."""
    request = wake("hm1nd", "operator", '[fake:call kill {"name": "bob"}]')
    for role in ("system", "user"):
        request["messages"].append(
            {"role": role, "content": "Available agent types for the Agent tool: …"}
        )
        assert Script().reply(request).call == ToolCall("kill", {"name": "bob"})
    # An earlier turn's wake prompt, before the model's answer, is not read again.
    earlier = wake("alice", "operator", "old")["messages"]
    request["messages"] = [
        *earlier,
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "hi"},
    ]
    assert Script().reply(request).call is None

"""End to end: operator → alice → bob → alice → operator, real claude, real broker, Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import CHROMIUM_ARGS, require_tool
from tests.harness.conftest import Hive
from tests.polling import wait_until


@pytest.mark.slow
def test_operator_alice_bob_conversation(hive: Hive, artifacts: Path) -> None:
    chromium = require_tool("chromium")
    broker = hive.broker
    alice, bob = hive.harness("alice"), hive.harness("bob")
    assert alice.status() == {
        "logged_in": True,
        "busy": False,
        "turns": 0,
        "last_turn_at": None,
        "cost_usd": 0.0,
        "input_tokens": 0,
        "output_tokens": 0,
    }

    first = broker.send("alice", "hello hive")

    def done() -> dict[str, object] | None:
        return next(
            (
                m
                for m in broker.messages("operator")
                if m["from"] == "alice" and m["body"] == "done"
            ),
            None,
        )

    wait_until(done, "alice to tell the operator done", timeout=60)
    flow = [(m["from"], m["to"]) for m in broker.messages() if m["id"] >= first]
    assert flow == [
        ("operator", "alice"),
        ("alice", "bob"),
        ("bob", "alice"),
        ("alice", "operator"),
    ]
    assert broker.messages("bob")[0]["body"] == "hi bob, alice here. operator says: hello hive"

    wait_until(
        lambda: len(alice.turn_ends()) == 2 and len(bob.turn_ends()) == 1, "turns end", timeout=20
    )
    assert all(t["ok"] for t in alice.turn_ends() + bob.turn_ends())
    status = wait_until(
        lambda: (s := alice.status()) and s["turns"] == 2 and s, "status", timeout=20
    )
    assert status["cost_usd"] > 0 and status["input_tokens"] > 0 and status["output_tokens"] > 0
    assert status["last_turn_at"] is not None and status["busy"] is False
    tools = [
        e["data"]["message"]["content"][0]
        for e in alice.events()
        if e["kind"] == "stream"
        and e["data"].get("type") == "assistant"
        and e["data"]["message"]["content"][0]["type"] == "tool_use"
    ]
    assert [t["name"] for t in tools] == ["mcp__hive__send", "mcp__hive__send"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(bob.url + "/")
            page.wait_for_selector(".ev.end.ok")
            assert "hi bob, alice here" in page.inner_text("#log")
            assert "send" in page.inner_text(".ev.tool")
            page.goto(alice.url + "/")
            page.wait_for_selector(".ev.end.ok >> nth=1")
            text = page.inner_text("#log")
            assert "message #" in text and "from operator" in text and "from bob" in text
            assert 'send(to="operator", body="done")' in text
            assert "2 turns" in page.inner_text("#status")
            assert page.locator("form.send textarea[name=body]").count() == 1
            page.screenshot(path=str(artifacts / "harness-alice.png"), full_page=True)
        finally:
            browser.close()

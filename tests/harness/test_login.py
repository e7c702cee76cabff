"""The login flow through the web UI against a fake ``claude auth login``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.conftest import Hive
from tests.polling import wait_until

FAKE_LOGIN = Path(__file__).with_name("fake_login.py")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def _submit(web: httpx.Client, **fields: str) -> str:
    page = web.get("/login").text
    r = web.post("/login", data={"csrf": _csrf(page), **fields}, follow_redirects=True)
    assert r.status_code == 200, r.text
    return r.text


@pytest.mark.slow
def test_login_relays_url_and_code_then_the_loop_starts(hive: Hive) -> None:
    bob = hive.harness(
        "bob",
        model_url=None,
        extra_env={"HIVE_LOGIN_COMMAND": f"{sys.executable} {FAKE_LOGIN}"},
    )
    status = bob.status()
    assert status is not None and status["logged_in"] is False
    hive.broker.send("bob", "hello while logged out")
    with httpx.Client(base_url=bob.url, timeout=10) as web:
        assert 'href="login"' in web.get("/").text
        assert web.post("/login", data={"action": "start"}).status_code == 403
        page = _submit(web, action="start")
        assert "https://claude.ai/oauth/authorize?state=t3st" in page

        page = _submit(web, code="wrong-code")
        assert "OAuth error: invalid code" in page
        assert web.get("/status.json").json()["login"]["phase"] == "failed"
        assert bob.events() == []  # no turn ran while logged out

        assert "oauth/authorize" in _submit(web, action="start")
        page = _submit(web, code="good-code")
        assert "Logged in" in page
    assert (bob.claude_dir / ".credentials.json").exists()
    wait_until(
        lambda: (s := bob.status()) and s["logged_in"], "logged_in in status.json", timeout=20
    )
    start = wait_until(
        lambda: next((e for e in bob.events() if e["kind"] == "turn_start"), None),
        "the turn loop to lease the waiting message",
        timeout=20,
    )
    assert start["data"]["message"]["body"] == "hello while logged out"

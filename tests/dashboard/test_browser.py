"""The dashboard in Debian's Chromium against a running hive (Playwright).

hm1nd asks over c0re.sock, the operator approves and denies with the mouse,
the agents page follows over SSE without a reload, a forged POST changes
nothing, and the live flow survives a broker restart. Screenshots of every
page land in the artifacts dir.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pygit2
import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from hyperhive.reconciler import gitrepo
from tests.conftest import CHROMIUM_ARGS, require_tool
from tests.dashboard.hive_proc import HiveProcess
from tests.dashboard.repos import agent_yaml
from tests.polling import until

pytestmark = pytest.mark.slow
START_ALICE = "Start alice\n\nShe has a queue of reviews waiting; the operator asked for her."


@pytest.fixture
async def hive(tmp_path: Path) -> AsyncIterator[HiveProcess]:
    require_tool("bwrap")
    h = HiveProcess(tmp_path)
    try:
        await h.start()
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def browser_ctx() -> AsyncIterator[BrowserContext]:
    chromium = require_tool("chromium")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        ctx = await browser.new_context(viewport={"width": 1280, "height": 860})
        ctx.set_default_timeout(15_000)
        try:
            yield ctx
        finally:
            await browser.close()


def proposed_has(hive: HiveProcess, name: str) -> bool:
    repo = pygit2.Repository(str(hive.paths.proposed))
    return name in repo.head.peel(pygit2.Commit).tree


async def shot(page: Page, artifacts: Path, name: str) -> None:
    await page.screenshot(path=str(artifacts / f"dashboard-{name}.png"), full_page=True)


async def test_operator_in_the_browser(
    hive: HiveProcess, browser_ctx: BrowserContext, artifacts: Path
) -> None:
    gitrepo.commit_files(hive.paths.applied, {"alice/agent.yaml": agent_yaml("alice",
                         state="stopped")}, "Add alice, stopped", {})  # fmt: skip
    await until(lambda: _is(hive.phase("alice"), "stopped"), "alice stopped", timeout=15)
    await until(lambda: proposed_has(hive, "alice"), "applied merged into proposed", timeout=15)
    # hm1nd's side: a commit in /agents, then request_apply_commit on c0re.sock.
    change = agent_yaml("alice", state="running", systemPrompt="wake up")
    sha = gitrepo.commit_files(hive.paths.proposed, {"alice/agent.yaml": change}, START_ALICE, {})
    answer = await hive.manager({"cmd": "request_apply_commit", "sha": sha})
    assert answer["ok"], answer
    first = answer["id"]

    agents = await browser_ctx.new_page()
    await agents.goto(f"{hive.url}?token={hive.token}")
    assert agents.url == hive.url  # the token left the address bar
    await expect(agents.locator("#agent-alice")).to_contain_text("stopped")
    await expect(agents.locator("nav .count")).to_have_text("1")
    await shot(agents, artifacts, "agents")

    approvals = await browser_ctx.new_page()
    await approvals.goto(f"{hive.url}approvals")
    card = approvals.locator(f"#approval-{first}")
    await expect(card.locator(".diff .add")).to_contain_text(["+  state: running"])
    await expect(card.locator(".diff .del")).to_contain_text(["-  state: stopped"])
    await expect(card.locator(".why")).to_contain_text("a queue of reviews waiting")
    await shot(approvals, artifacts, "approvals")

    # A forged POST without the CSRF token (the session cookie rides along) changes nothing.
    status = await approvals.evaluate(
        f"fetch('/approvals/{first}/approve', {{method: 'POST', body: new URLSearchParams("
        "{note: 'x'})}).then(r => r.status)"
    )
    assert status == 403
    assert (await _approval(hive, first))["status"] == "pending"

    # Nor can a page on another port of the same host (what an agent serves), even one
    # that learned the dashboard's token: same site, so the cookie rides along.
    csrf = await approvals.locator("input[name=csrf]").first.input_value()
    async with other_origin() as evil_url:
        evil = await browser_ctx.new_page()
        await evil.goto(evil_url)
        await evil.evaluate(
            f"fetch('{hive.url}approvals/{first}/approve', {{method: 'POST', mode: 'no-cors', "
            f"credentials: 'include', body: new URLSearchParams({{csrf: '{csrf}'}})}})"
        )
        await evil.close()
    assert (await _approval(hive, first))["status"] == "pending"

    await card.get_by_role("button", name="◆ APPR0VE").click()
    await expect(approvals.locator("#toast")).to_contain_text(f"approval {first} applied")
    # The other page follows without a reload: the status bus → SSE → refresh of <main>.
    await expect(agents.locator("#agent-alice")).to_contain_text("running")
    assert (await _approval(hive, first))["status"] == "applied"

    answer = await hive.manager({"cmd": "request_spawn", "name": "bob", "spec": {"model": "haiku"}})
    second = answer["id"]
    card = approvals.locator(f"#approval-{second}")  # arrives over SSE, no reload
    await card.get_by_label("note to hm1nd").fill("not now: bob needs a purpose")
    await card.get_by_role("button", name="✕ DENY").click()
    await expect(approvals.locator("#toast")).to_contain_text("denied")
    await until(
        lambda: _mail_has(hive, "not now: bob needs a purpose"),
        "the note in hm1nd's mail",
        timeout=15,
    )
    await expect(approvals.locator("nav .count")).to_have_count(0)  # the nav follows too
    await shot(approvals, artifacts, "approvals-decided")

    # Without JavaScript the forms still work: POST, 303 back to the page.
    third = (await hive.manager({"cmd": "request_spawn", "name": "carol", "spec": {}}))["id"]
    assert browser_ctx.browser is not None
    plain = await browser_ctx.browser.new_context(
        java_script_enabled=False, storage_state=await browser_ctx.storage_state()
    )
    nojs = await plain.new_page()
    await nojs.goto(f"{hive.url}approvals")
    card = nojs.locator(f"#approval-{third}")
    await card.get_by_label("note to hm1nd").fill("no js, still no")
    await card.get_by_role("button", name="✕ DENY").click()
    await expect(nojs.locator(".flash")).to_contain_text(f"approval {third} denied")
    assert nojs.url.startswith(f"{hive.url}approvals?msg=")
    assert (await _approval(hive, third))["note"] == "no js, still no"
    await plain.close()

    page = await browser_ctx.new_page()
    await page.goto(f"{hive.url}agents/alice")
    await expect(page.locator("h1")).to_contain_text("alice")
    await expect(page.locator("main")).to_contain_text(f"Approval-Id: {first}")
    await expect(page.locator("main")).to_contain_text(f"approval {first}: applied")
    await shot(page, artifacts, "agent")

    # The live flow, relayed from the broker, catches up after a broker restart.
    await page.goto(f"{hive.url}flow")
    await expect(page.locator("#flow-state")).to_have_text("live")
    await hive.send("operator", "alice", "hello alice, from the operator")
    await expect(page.locator("#flow")).to_contain_text("hello alice, from the operator")
    hive.broker.stop()
    await expect(page.locator("#flow-state")).to_contain_text("reconnecting")
    await hive.broker.start()
    await hive.send("operator", "alice", "still there after the restart?")
    await expect(page.locator("#flow")).to_contain_text("still there after the restart?")
    await expect(page.locator("#flow li")).to_have_count(await _sends(page))
    await shot(page, artifacts, "flow")

    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    await page.goto(f"{hive.url}agents/alice")
    await shot(page, artifacts, "agent-narrow")

    fresh = await browser_ctx.browser.new_page()
    await fresh.goto(hive.url)
    await expect(fresh.locator("label")).to_contain_text("operator token")
    await shot(fresh, artifacts, "login")
    await fresh.close()


@contextlib.asynccontextmanager
async def other_origin() -> AsyncIterator[str]:
    """A blank page on a free loopback port: a same-site, cross-origin attacker."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\n"
                     b"connection: close\r\n\r\n<p>agent</p>\n")  # fmt: skip
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


async def _is(phase: Any, want: str) -> bool:
    return bool(await phase == want)


async def _approval(hive: HiveProcess, approval_id: int) -> dict[str, Any]:
    pending = await hive.admin({"cmd": "pending", "all": True})
    return next(a for a in pending["approvals"] if a["id"] == approval_id)


async def _mail_has(hive: HiveProcess, text: str) -> bool:
    return any(text in m for m in await hive.manager_mail())


async def _sends(page: Page) -> int:
    """Every message row is one distinct message: none lost, none twice after the restart."""
    ids = await page.locator("#flow li").evaluate_all("els => els.map(e => e.id)")
    assert len(ids) == len(set(ids)), ids
    return len(ids)

"""The whole product as ``make run`` starts it: ``hive-c0re up --demo``.

Real broker, c0re, process runtime (bwrap), harness, real claude CLI against
the packaged demo model; the operator opens the printed URL in Chromium and
reads both agents' turns through c0re's proxy; hm1nd's claude asks for a
commit it made in proposed, the operator approves, the new agent runs;
Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright

from hyperhive import jsonlines
from hyperhive.paths import Paths
from tests.conftest import CHROMIUM_ARGS, require_tool
from tests.polling import until

pytestmark = pytest.mark.slow
HIVE_C0RE = str(Path(sys.executable).parent / "hive-c0re")
URL_RE = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/\?token=\S+)")
#: Seconds between checks: each is a round trip to another process, so poll gently.
POLL_EVERY = 0.1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_demo_hive_end_to_end(tmp_path: Path, artifacts: Path) -> None:
    require_tool("bwrap")
    require_tool("claude")
    chromium = require_tool("chromium")
    home = tmp_path / "hive"
    paths = Paths.from_home(home)
    log = tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [HIVE_C0RE, "up", "--home", str(home), "--demo", "--dashboard-port", str(free_port())],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def text() -> str:
        return log.read_text(errors="replace")

    def printed_url() -> str | None:
        assert up.poll() is None, f"up exited {up.returncode}\n{text()}"
        m = URL_RE.search(text())
        return m.group(1) if m else None

    transport = httpx.AsyncHTTPTransport(uds=str(paths.broker_sock))
    try:
        url = await until(
            printed_url, "up to print the dashboard URL", timeout=60, interval=POLL_EVERY
        )

        # The scripted conversation: operator → alice → bob → alice → operator "done".
        async with httpx.AsyncClient(transport=transport, base_url="http://broker") as broker:

            async def flow() -> list[tuple[str, str, str]]:
                r = await broker.get("/messages", params={"limit": 1000})
                if r.status_code != 200:
                    return []
                return [(m["from"], m["to"], m["body"]) for m in r.json()["messages"]]

            def done(msgs: list[tuple[str, str, str]]) -> bool:
                return ("alice", "operator", "done") in msgs

            async def finished() -> list[tuple[str, str, str]] | None:
                msgs = await flow()
                return msgs if done(msgs) else None

            msgs = await until(
                finished, "alice to tell the operator done", timeout=150, interval=POLL_EVERY
            )
        pairs = [(f, t) for f, t, _ in msgs]
        assert pairs[:4] == [
            ("operator", "alice"),
            ("alice", "bob"),
            ("bob", "alice"),
            ("alice", "operator"),
        ]

        status = await jsonlines.request(paths.host_sock, {"cmd": "status"})
        agents = {a["name"]: a for a in status["agents"]}
        assert {"hm1nd", "alice", "bob"} <= set(agents)
        assert agents["alice"]["phase"] == "running"
        ports = {name: agents[name]["web_port"] for name in ("alice", "bob")}

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1200, "height": 900})
                await page.goto(url)  # the printed URL turns the token into a session
                await page.wait_for_selector("text=alice")
                await page.screenshot(path=str(artifacts / "e2e-dashboard.png"), full_page=True)
                for name, turns in (("bob", 1), ("alice", 2)):
                    await page.goto(f"http://127.0.0.1:{ports[name]}/")
                    await page.wait_for_selector(f".ev.end.ok >> nth={turns - 1}", timeout=30_000)
                    log_text = await page.inner_text("#log")
                    assert "send" in log_text
                    await page.screenshot(path=str(artifacts / f"e2e-{name}.png"), full_page=True)
                # Without the session the proxy refuses the page.
                fresh = await browser.new_context()
                anon = await fresh.new_page()
                resp = await anon.goto(f"http://127.0.0.1:{ports['alice']}/")
                assert resp is not None and resp.status in (401, 403)
                await fresh.close()
            finally:
                await browser.close()

        await manager_proposes_and_operator_approves(paths)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)  # Ctrl-C
        code = await asyncio.to_thread(up.wait, 90)
    assert code == 0, text()
    assert not paths.host_sock.exists()
    assert not paths.broker_sock.exists()


async def admin(paths: Paths, **req: Any) -> dict[str, Any]:
    resp = await jsonlines.request(paths.host_sock, req)
    assert resp["ok"], resp
    return resp


async def manager_proposes_and_operator_approves(paths: Paths) -> None:
    """hm1nd commits carol in proposed; its real claude calls request_apply_commit."""
    proposed = paths.proposed
    carol = (paths.applied / "bob" / "agent.yaml").read_text().replace("bob", "carol")
    (proposed / "carol").mkdir()
    (proposed / "carol" / "agent.yaml").write_text(carol)
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "hm1nd",
        "GIT_AUTHOR_EMAIL": "hm1nd@hive",
        "GIT_COMMITTER_NAME": "hm1nd",
        "GIT_COMMITTER_EMAIL": "hm1nd@hive",
    }
    for argv in (["add", "carol"], ["commit", "-q", "-m", "add carol"]):
        subprocess.run(["git", "-C", str(proposed), *argv], check=True, env=git_env)
    sha = subprocess.run(
        ["git", "-C", str(proposed), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
        env=git_env,
    ).stdout.strip()

    call = json.dumps({"sha": sha})
    await admin(
        paths, cmd="send", to="hm1nd", body=f"apply carol [fake:call request_apply_commit {call}]"
    )

    async def requested() -> dict[str, Any] | None:
        pending = (await admin(paths, cmd="pending"))["approvals"]
        return next((a for a in pending if a["sha"] == sha), None)

    approval = await until(
        requested,
        "hm1nd's request to appear as a pending approval",
        timeout=90,
        interval=POLL_EVERY,
    )
    assert approval["kind"] == "apply_commit"
    assert approval["status"] == "pending"
    await admin(paths, cmd="approve", id=approval["id"])

    async def carol_runs() -> bool:
        status = await admin(paths, cmd="status")
        return any(a["name"] == "carol" and a["phase"] == "running" for a in status["agents"])

    await until(carol_runs, "carol to run after the approval", timeout=90, interval=POLL_EVERY)
    assert (
        f"Approval-Id: {approval['id']}"
        in subprocess.run(
            ["git", "-C", str(paths.applied), "log", "-1", "--format=%B"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )

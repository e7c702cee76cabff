"""A real hive for end-to-end tests: hive-broker and ``hive-c0re serve`` as processes.

Agents run on the process runtime (bwrap) with an idle command instead of the
harness, so the tests measure the approval gate and the dashboard, not claude.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from hyperhive import jsonlines
from hyperhive.paths import Paths
from tests.dashboard.procs import BIN, BrokerProcess, stop
from tests.polling import until

IDLE_AGENT = [sys.executable, "-c",
              "import signal,sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
              "signal.pause()"]  # fmt: skip


class HiveProcess:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.paths = Paths.from_home(home)
        self.broker = BrokerProcess(self.paths, home / "broker.log")
        self.c0re: subprocess.Popen[bytes] | None = None
        self.config = home / "c0re.toml"
        self.config.write_text(
            "[c0re]\nresync_seconds = 5.0\nagent_command = "
            + json.dumps(IDLE_AGENT)
            + "\n[dashboard]\nport = 0\n"
        )

    async def start(self, env: Mapping[str, str] | None = None) -> None:
        if self.broker.proc is None:
            await self.broker.start()
        url = self.paths.run / "dashboard.url"
        with contextlib.suppress(FileNotFoundError):
            url.unlink()
        with (self.home / "c0re.log").open("ab") as out:
            self.c0re = subprocess.Popen(
                [str(BIN / "hive-c0re"), "serve", "--home", str(self.home),
                 "--config", str(self.config), "--log-level", "INFO"],
                stdout=out, stderr=out, start_new_session=True,
                env={**os.environ, **(env or {})},
            )  # fmt: skip
        await until(url.exists, "the dashboard to listen", timeout=15)

    @property
    def url(self) -> str:
        return (self.paths.run / "dashboard.url").read_text().strip()

    @property
    def token(self) -> str:
        return self.paths.operator_token.read_text().strip()

    async def admin(self, req: dict[str, Any]) -> dict[str, Any]:
        return await jsonlines.request(self.paths.host_sock, req)

    async def manager(self, req: dict[str, Any]) -> dict[str, Any]:
        """What hm1nd's MCP tools do: one line on RUN/manager/c0re.sock."""
        return await jsonlines.request(self.paths.c0re_sock, req)

    async def phase(self, name: str) -> str | None:
        resp = await self.admin({"cmd": "status"})
        return next((a["phase"] for a in resp.get("agents", []) if a["name"] == name), None)

    async def manager_mail(self) -> list[str]:
        transport = httpx.AsyncHTTPTransport(uds=str(self.paths.broker_sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
            msgs = (await c.get("/messages?agent=manager&limit=1000")).json()["messages"]
        return [m["body"] for m in msgs if m["from"] == "system"]

    async def send(self, sender: str, to: str, body: str) -> None:
        transport = httpx.AsyncHTTPTransport(uds=str(self.paths.broker_sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
            r = await c.post("/send", json={"from": sender, "to": to, "body": body})
            assert r.status_code in (200, 201), r.text

    def kill9(self) -> int:
        assert self.c0re is not None
        os.kill(self.c0re.pid, signal.SIGKILL)
        code = self.c0re.wait()
        self.c0re = None
        return code

    async def wait_c0re_exit(self) -> int:
        assert self.c0re is not None
        proc = self.c0re
        await until(lambda: proc.poll() is not None, "hive-c0re to exit", timeout=20)
        self.c0re = None
        return int(proc.returncode)

    async def stop(self) -> None:
        """Stop the agents through c0re, then c0re and the broker."""
        if self.c0re is not None and self.c0re.poll() is None:
            with contextlib.suppress(Exception):
                await jsonlines.request(self.paths.host_sock, {"cmd": "shutdown", "agents": True},
                                        timeout=30)  # fmt: skip
            with contextlib.suppress(AssertionError):
                await until(lambda: self.c0re is None or self.c0re.poll() is not None,
                            "c0re to stop", timeout=15)  # fmt: skip
            if self.c0re is not None:
                stop(self.c0re)
        self.c0re = None
        self.broker.stop()

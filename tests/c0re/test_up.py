"""``hive-c0re up`` as an operator runs it: start, crash, restart (leftovers), Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hyperhive import jsonlines
from hyperhive.paths import Paths
from tests.conftest import require_tool
from tests.polling import until

pytestmark = pytest.mark.slow
HIVE_C0RE = str(Path(sys.executable).parent / "hive-c0re")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Up:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.log = home.parent / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [HIVE_C0RE, "up", "--home", str(self.home), "--dashboard-port", str(free_port())],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")},
            )

    async def until_ready(self) -> None:
        proc = self.proc
        assert proc is not None

        def printed_url() -> bool:
            if proc.poll() is not None:  # up dying first fails at once, not at the deadline
                raise AssertionError(f"up exited {proc.returncode}\n{self.text()}")
            return "dashboard: http://127.0.0.1:" in self.text()

        await until(
            printed_url,
            "up to print the dashboard URL",
            timeout=30,
            interval=0.05,
            explain=self.text,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")


async def test_up_crash_restart_and_ctrl_c(tmp_path: Path) -> None:
    require_tool("bwrap")
    home = tmp_path / "hive"
    paths = Paths.from_home(home)
    up = Up(home)
    up.start()
    try:
        await up.until_ready()
        token = paths.operator_token
        assert token.stat().st_mode & 0o777 == 0o600
        assert f"?token={token.read_text().strip()}" in up.text()
        first = json.loads((paths.run / "up.json").read_text())
        assert set(first) == {"broker", "c0re"}

        # up dies hard: broker and c0re survive in their own sessions...
        assert up.proc is not None
        up.proc.kill()
        up.proc.wait()
        # ...and the next up stops them before starting its own.
        up.log.write_text("")
        up.start()
        await up.until_ready()
        assert "stopping leftover broker" in up.text() and "stopping leftover c0re" in up.text()
        second = json.loads((paths.run / "up.json").read_text())
        assert second["c0re"]["pid"] != first["c0re"]["pid"]
        resp = await jsonlines.request(paths.host_sock, {"cmd": "status"})
        assert resp["ok"] and resp["agents"][0]["name"] == "hm1nd"
    finally:
        assert up.proc is not None
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = await asyncio.to_thread(up.proc.wait, 60)
    assert code == 0, up.text()
    assert "stopped" in up.text()
    assert not (paths.run / "up.json").exists()
    assert not paths.host_sock.exists()

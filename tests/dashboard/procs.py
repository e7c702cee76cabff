"""Real processes for the dashboard's tests: hive-broker, started and stopped for real."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from hyperhive.paths import Paths
from tests.polling import until

BIN = Path(sys.executable).parent


async def broker_healthy(paths: Paths) -> bool:
    transport = httpx.AsyncHTTPTransport(uds=str(paths.broker_sock))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://b", timeout=2) as c:
            return (await c.get("/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """SIGTERM (or ``sig``) the process group, then SIGKILL after 10 s; always reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class BrokerProcess:
    def __init__(self, paths: Paths, log: Path) -> None:
        self.paths = paths
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "hive-broker"), "serve", "--run-dir", str(self.paths.run),
                 "--state-dir", str(self.paths.state), "--log-level", "warning"],
                stdout=out, stderr=out, start_new_session=True,
            )  # fmt: skip
        await until(
            lambda: broker_healthy(self.paths), "hive-broker to answer /healthz", timeout=15
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

"""The process around the broker: flags, config, SIGTERM, leases in real time."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from hyperhive.broker.daemon import Broker
from hyperhive.broker.settings import BrokerSettings
from hyperhive.clock import FakeClock
from hyperhive.paths import Paths
from tests.broker.client import HIVE_BROKER, BrokerClient, BrokerProcess, until_waiting


async def test_sigterm_exits_zero_and_removes_sockets(
    broker_proc: BrokerProcess, control: BrokerClient
) -> None:
    await control.open("alice")
    sock = broker_proc.paths.mailbox_sock("alice")
    async with BrokerClient(sock) as alice:
        waiting = asyncio.ensure_future(alice.recv(wait=30))
        await until_waiting(control, "alice")
        status = await asyncio.to_thread(broker_proc.stop)
        assert status == 0
        r = await waiting
        assert r.status == 204  # a parked long-poll is answered, not cut off
    assert not sock.exists()
    assert not broker_proc.paths.broker_sock.exists()
    assert sock.parent.is_dir()


async def test_mailboxes_and_mail_survive_restart(home: Path) -> None:
    proc = BrokerProcess(home).start()
    try:
        async with BrokerClient(proc.paths.broker_sock) as control:
            await control.open("alice")
            mid = (await control.post("operator", "alice", "kept")).data["id"]
        assert proc.stop() == 0
        proc.start()
        assert proc.paths.mailbox_sock("alice").exists()
        async with BrokerClient(proc.paths.mailbox_sock("alice")) as alice:
            got = await alice.recv()
            assert (got.data["id"], got.data["body"]) == (mid, "kept")
    finally:
        assert proc.stop() == 0


async def test_short_lease_expires_and_wakes_a_waiting_recv(home: Path) -> None:
    config = home.parent / "broker.toml"
    config.write_text("[broker]\nlease_seconds = 60\nmax_failures = 2\n")
    # The flag overrides the file.
    proc = BrokerProcess(home, "--config", str(config), "--lease-seconds", "0.3").start()
    try:
        async with BrokerClient(proc.paths.broker_sock) as control:
            await control.open("alice")
            await control.open("manager")
            mid = (await control.post("operator", "alice", "slow")).data["id"]
            async with BrokerClient(proc.paths.mailbox_sock("alice")) as alice:
                assert (await alice.recv()).data["attempt"] == 1
                again = await alice.recv(wait=10)  # parked until the lease expires
                assert (again.data["id"], again.data["attempt"]) == (mid, 2)
            async with BrokerClient(proc.paths.mailbox_sock("manager")) as manager:
                notice = await manager.recv(wait=10)  # second expiry: dead letter
                assert notice.data["from"] == "system"
                assert f"message {mid}" in notice.data["body"]
    finally:
        assert proc.stop() == 0


def test_bad_flags_and_config_fail_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    cases = [
        (["serve", "--lease-seconds", "soon"], "invalid float"),
        (["serve", "--home", str(tmp_path), "--run-dir", str(tmp_path)], "not both"),
        (["serve", "--home", str(tmp_path), "--config", str(tmp_path / "none.toml")], "cannot"),
        (["serve", "--home", str(tmp_path), "--config", str(bad)], "lease_seconds"),
    ]
    bad.write_text('[broker]\nlease_seconds = "long"\n')
    for argv, message in cases:
        out = subprocess.run(
            [HIVE_BROKER, *argv], check=False, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 2, out
        assert message in out.stderr
        assert "Traceback" not in out.stderr


async def test_unbindable_mailbox_socket_is_503_not_a_crash(tmp_path: Path) -> None:
    # RUN/broker.sock fits the 107-byte unix socket limit; RUN/agents/<n>/broker.sock does not.
    run = tmp_path / ("r" * max(1, 100 - len(str(tmp_path)) - len("/broker.sock") - 1))
    paths = Paths(run=run, state=tmp_path / "state")
    assert len(str(paths.broker_sock)) < 108 <= len(str(paths.mailbox_sock("alice")))
    broker = Broker(paths, BrokerSettings(), FakeClock())
    async with broker.running(), BrokerClient(paths.broker_sock) as control:
        r = await control.open("alice")
        assert (r.status, r.error_code) == (503, "unavailable")
        assert "alice" in r.data["error"]["message"]
        assert (await control.call("GET", "/healthz")).status == 200

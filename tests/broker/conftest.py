"""Fixtures: a real ``hive-broker`` process, and an in-process broker on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hyperhive.broker.daemon import Broker
from hyperhive.broker.settings import BrokerSettings
from hyperhive.clock import FakeClock
from hyperhive.paths import Paths
from tests.broker.client import BrokerClient, BrokerProcess


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "hive"


@pytest.fixture
def broker_proc(home: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(home).start()
    try:
        yield proc
    finally:
        status = proc.stop()
        assert status == 0, proc.log.read_text()


@pytest.fixture
async def control(broker_proc: BrokerProcess) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker_proc.paths.broker_sock) as c:
        yield c


@dataclass
class InProc:
    broker: Broker
    clock: FakeClock
    paths: Paths

    def client(self, mailbox: str | None = None) -> BrokerClient:
        sock = self.paths.broker_sock if mailbox is None else self.paths.mailbox_sock(mailbox)
        return BrokerClient(sock)


@pytest.fixture
async def inproc(home: Path) -> AsyncIterator[InProc]:
    """A broker in the test's own event loop whose leases and retention follow ``clock``."""
    clock = FakeClock()
    broker = Broker(Paths.from_home(home), BrokerSettings(), clock)
    async with broker.running():
        yield InProc(broker, clock, broker.paths)

"""``GET /stream``: live events, and resume with ``Last-Event-ID`` — also across a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tests.broker.client import BrokerClient, BrokerProcess


@dataclass
class Sse:
    id: int
    event: str
    data: dict[str, Any]


class Stream:
    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines = lines

    async def next(self) -> Sse:
        """The next event, skipping comments (``: connected``, pings)."""
        fields: dict[str, str] = {}
        async for line in self.lines:
            if line == "":
                if fields:
                    return Sse(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        raise EOFError("stream ended")

    async def take(self, n: int) -> list[Sse]:
        return [await self.next() for _ in range(n)]


@asynccontextmanager
async def open_stream(client: BrokerClient, last_event_id: int | None) -> AsyncIterator[Stream]:
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    timeout = httpx.Timeout(10.0)
    async with client.http.stream("GET", "/stream", headers=headers, timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.aiter_lines()
        assert await anext(lines) == ": connected"  # subscribed: later events are live
        yield Stream(lines)


def sends(events: list[Sse]) -> list[str]:
    return [e.data["message"]["body"] for e in events if e.event == "send"]


async def test_live_then_resume_without_gaps_or_repeats(
    broker_proc: BrokerProcess, control: BrokerClient
) -> None:
    await control.open("alice")
    await control.post("operator", "alice", "before")  # not shown to a fresh stream
    async with open_stream(control, None) as stream:
        for i in range(3):
            await control.post("operator", "alice", f"live{i}")
        live = await stream.take(3)
    assert sends(live) == ["live0", "live1", "live2"]
    assert [e.data["id"] for e in live] == [e.id for e in live]
    # Disconnected: more happens, including a delivery and an ack.
    async with BrokerClient(broker_proc.paths.mailbox_sock("alice")) as alice:
        for i in range(3):
            await control.post("operator", "alice", f"missed{i}")
        got = await alice.recv()
        await alice.ack(got.data["id"])
    async with open_stream(control, live[-1].id) as stream:
        resumed = await stream.take(5)
        await control.post("operator", "alice", "after")
        tail = await stream.next()
    assert [e.event for e in resumed] == ["send", "send", "send", "deliver", "ack"]
    assert sends(resumed) == ["missed0", "missed1", "missed2"]
    ids = [e.id for e in [*live, *resumed, tail]]
    assert ids == sorted(set(ids))
    assert sends([tail]) == ["after"]
    # Last-Event-ID 0 replays everything retained, in order.
    async with open_stream(control, 0) as stream:
        everything = await stream.take(tail.id)
    assert [e.id for e in everything] == list(range(1, tail.id + 1))
    assert sends(everything)[0] == "before"


async def test_resume_across_broker_restart(broker_proc: BrokerProcess) -> None:
    async with BrokerClient(broker_proc.paths.broker_sock) as control:
        await control.open("alice")
        async with open_stream(control, None) as stream:
            await control.post("operator", "alice", "one")
            seen = await stream.next()
        await control.post("operator", "alice", "two")
        await control.post("operator", "alice", "three")
    assert broker_proc.stop() == 0
    broker_proc.start()
    async with (
        BrokerClient(broker_proc.paths.broker_sock) as control,
        open_stream(control, seen.id) as stream,
    ):
        missed = await stream.take(2)
        await control.post("operator", "alice", "four")
        live = await stream.next()
    assert sends(missed) == ["two", "three"]
    assert sends([live]) == ["four"]
    assert [e.id for e in missed] == [seen.id + 1, seen.id + 2]
    assert live.id == seen.id + 3

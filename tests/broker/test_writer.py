"""The group-committing writer on its own: batching, failure isolation, commit-before-reply."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hyperhive import sqlite as hive_sqlite
from hyperhive.broker import store
from hyperhive.broker.errors import BadRequest, ShuttingDown
from hyperhive.broker.writer import Event, Tx, Writer
from hyperhive.clock import FakeClock


def make_writer(db: Path) -> tuple[Writer, list[Event]]:
    published: list[Event] = []
    conn = hive_sqlite.connect(db, store.MIGRATIONS, check_same_thread=False)
    return Writer(conn, FakeClock(), published.extend), published


async def test_concurrent_sends_share_commits_and_land_before_the_reply(tmp_path: Path) -> None:
    writer, published = make_writer(tmp_path / "b.sqlite")
    writer.start()
    reader = hive_sqlite.connect(tmp_path / "b.sqlite", store.MIGRATIONS)
    try:
        seen_on_disk: list[bool] = []

        async def send(i: int) -> None:
            sent = await writer.submit(lambda tx: store.insert_message(tx, "a", "b", f"m{i}", None))
            # The reply comes only after the commit: another connection sees it.
            seen_on_disk.append(store.message(reader, sent.id) is not None)

        await asyncio.gather(*(send(i) for i in range(200)))
        assert all(seen_on_disk)
        assert len(seen_on_disk) == 200
        assert writer.jobs_done == 200
        assert writer.batches < 200  # group commit: many sends per fsync
        assert [e.kind for e in published] == ["send"] * 200
        assert [e.id for e in published] == sorted(e.id for e in published)
    finally:
        await writer.stop()
        reader.close()


async def test_lone_jobs_commit_inline_and_land_before_the_reply(tmp_path: Path) -> None:
    """Small batches skip the commit thread; they must be just as durable."""
    writer, published = make_writer(tmp_path / "b.sqlite")
    writer.start()
    reader = hive_sqlite.connect(tmp_path / "b.sqlite", store.MIGRATIONS)
    try:
        for body in ("m0", "m1", "m2"):

            def insert(tx: Tx, body: str = body) -> store.Sent:
                return store.insert_message(tx, "a", "b", body, None)

            sent = await writer.submit(insert)
            assert store.message(reader, sent.id) is not None
        assert (writer.batches, writer.jobs_done) == (3, 3)
        assert [e.kind for e in published] == ["send"] * 3
        assert writer._fsync is not None
        assert not writer._fsync._threads  # the commit thread was never started
    finally:
        await writer.stop()
        reader.close()


async def test_a_failing_job_fails_alone(tmp_path: Path) -> None:
    writer, published = make_writer(tmp_path / "b.sqlite")
    writer.start()
    committed: list[int] = []

    def bad(tx: Tx) -> None:
        store.insert_message(tx, "a", "b", "half-done", None)
        raise BadRequest("no")

    try:
        one = writer.submit(lambda tx: store.insert_message(tx, "a", "b", "one", None))
        failing = writer.submit(bad)
        two = writer.submit(
            lambda tx: store.insert_message(tx, "a", "b", "two", None),
            lambda sent: committed.append(sent.id),
        )
        with pytest.raises(BadRequest):
            await failing
        await one
        assert committed == [(await two).id]
        bodies = [r[0] for r in writer._conn.execute("SELECT body FROM messages ORDER BY id")]
        assert bodies == ["one", "two"]  # nothing of the failed job, not even half
        assert len(published) == 2
    finally:
        await writer.stop()
    with pytest.raises(ShuttingDown):
        writer.submit(lambda tx: None)


async def test_lazy_jobs_ride_along_and_never_wait_long(tmp_path: Path) -> None:
    writer, published = make_writer(tmp_path / "b.sqlite")
    writer.start()
    try:
        sent = await writer.submit(lambda tx: store.insert_message(tx, "a", "b", "m", None))
        before = writer.batches
        lazy = writer.submit(lambda tx: store.deliver(tx, sent.id, 1), lazy=True)
        await writer.submit(lambda tx: store.ack(tx, sent.id, "b"))
        assert lazy.done()  # it rode along with the ack: one commit for both
        assert writer.batches == before + 1
        alone = writer.submit(lambda tx: store.deliver(tx, sent.id, 2), lazy=True)
        await asyncio.wait_for(alone, 5)  # committed by the timer, nothing else needed
        assert [e.kind for e in published] == ["send", "deliver", "ack", "deliver"]
    finally:
        await writer.stop()

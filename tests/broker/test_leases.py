"""Leases, dead letters, idempotency and retention on an in-process broker with a fake clock.

The broker runs in the test's event loop with real sqlite and real sockets;
only time is fake, so lease expiry and retention are driven by moving the
clock and calling the sweep the background task would call — no sleeping.
"""

from __future__ import annotations

from pathlib import Path

from hyperhive.broker.daemon import Broker
from hyperhive.broker.settings import BrokerSettings
from hyperhive.clock import FakeClock
from hyperhive.paths import Paths
from tests.broker.conftest import InProc


async def setup_boxes(hive: InProc, *names: str) -> None:
    async with hive.client() as control:
        for name in names:
            assert (await control.open(name)).status == 201


async def test_lease_expiry_redelivers_with_next_attempt(inproc: InProc) -> None:
    await setup_boxes(inproc, "alice")
    room = inproc.broker.mailroom
    async with inproc.client() as control, inproc.client("alice") as alice:
        mid = (await control.post("operator", "alice", "hi")).data["id"]
        first = await alice.recv()
        assert first.data["attempt"] == 1
        assert (await alice.recv()).status == 204  # leased: not handed out twice
        inproc.clock.advance(599)
        assert await room.expire_leases() == 0
        assert (await alice.renew(mid)).status == 200  # renewed at t=599: due at 1199
        inproc.clock.advance(599)
        assert await room.expire_leases() == 0
        inproc.clock.advance(2)
        assert await room.expire_leases() == 1
        again = await alice.recv()
        assert (again.data["id"], again.data["attempt"]) == (mid, 2)
        # The expired lease is gone: acking with it is a conflict only after re-lease is acked.
        assert (await alice.ack(mid)).status == 200
        assert (await alice.ack(mid)).status == 409
        kinds = [m["state"] for m in await control.messages()]
        assert kinds == ["acked"]


async def test_dead_letter_after_five_failures_notifies_manager(inproc: InProc) -> None:
    await setup_boxes(inproc, "alice", "manager")
    room = inproc.broker.mailroom
    async with (
        inproc.client() as control,
        inproc.client("alice") as alice,
        inproc.client("manager") as manager,
    ):
        mid = (await control.post("operator", "alice", "poison")).data["id"]
        for attempt in range(1, 6):
            got = await alice.recv()
            assert (got.data["id"], got.data["attempt"]) == (mid, attempt)
            if attempt % 2:
                assert (await alice.nack(mid)).status == 200
            else:  # expiry counts as a failed delivery too
                inproc.clock.advance(601)
                assert await room.expire_leases() == 1
        assert (await alice.recv()).status == 204
        notice = await manager.recv()
        assert notice.data["from"] == "system"
        assert f"message {mid} from operator to alice" in notice.data["body"]
        states = {m["id"]: m["state"] for m in await control.messages()}
        assert states[mid] == "dead"
        stats = (await control.call("GET", "/stats")).data
        assert stats["mailboxes"]["alice"]["dead"] == 1


async def test_dead_letters_to_manager_or_of_notices_do_not_loop(inproc: InProc) -> None:
    await setup_boxes(inproc, "manager")
    async with inproc.client() as control, inproc.client("manager") as manager:
        mid = (await control.post("operator", "manager", "manager poison")).data["id"]
        for _ in range(5):
            got = await manager.recv()
            assert got.data["id"] == mid
            await manager.nack(mid)
        # Dead, recorded, but no notice: it would be a notice to the manager about itself.
        assert (await manager.recv()).status == 204
        msgs = await control.messages()
        assert [(m["id"], m["state"]) for m in msgs] == [(mid, "dead")]


async def test_restart_voids_leases_without_failing_them(home: Path) -> None:
    clock = FakeClock()
    paths = Paths.from_home(home)
    broker = Broker(paths, BrokerSettings(max_failures=2), clock)
    async with broker.running():
        hive = InProc(broker, clock, paths)
        await setup_boxes(hive, "alice")
        async with hive.client() as control, hive.client("alice") as alice:
            mid = (await control.post("operator", "alice", "x")).data["id"]
            assert (await alice.recv()).data["attempt"] == 1
            await alice.nack(mid)
            assert (await alice.recv()).data["attempt"] == 2
    for attempt in (3, 4):  # each restart voids the lease; max_failures=2 is never reached
        broker = Broker(paths, BrokerSettings(max_failures=2), clock)
        async with broker.running():
            hive = InProc(broker, clock, paths)
            async with hive.client("alice") as alice:
                got = await alice.recv()
                assert (got.data["id"], got.data["attempt"]) == (mid, attempt)
    broker = Broker(paths, BrokerSettings(max_failures=2), clock)
    async with broker.running(), InProc(broker, clock, paths).client("alice") as alice:
        await alice.nack((await alice.recv()).data["id"])  # the 2nd failure: dead
        assert (await alice.recv()).status == 204


async def test_idempotency_key_survives_restart(home: Path) -> None:
    clock = FakeClock()
    paths = Paths.from_home(home)
    ids = []
    for _ in range(2):
        broker = Broker(paths, BrokerSettings(), clock)
        async with broker.running():
            hive = InProc(broker, clock, paths)
            async with hive.client() as control:
                await control.open("alice")
                ids.append((await control.post("system", "alice", "once", key="abc")).data["id"])
                assert len(await control.messages(agent="alice")) == 1
    assert ids[0] == ids[1]


async def test_retention_deletes_old_acked_messages_and_their_events(inproc: InProc) -> None:
    await setup_boxes(inproc, "alice")
    room = inproc.broker.mailroom
    async with inproc.client() as control, inproc.client("alice") as alice:
        old = (await control.post("operator", "alice", "old")).data["id"]
        await alice.ack((await alice.recv()).data["id"])
        pending = (await control.post("operator", "alice", "pending")).data["id"]
        inproc.clock.advance(29 * 86400)
        assert await room.retain() == 0
        recent = (await control.post("operator", "alice", "recent")).data["id"]
        await alice.recv()  # leases `pending`
        inproc.clock.advance(2 * 86400)
        assert await room.retain() == 1
        ids = [m["id"] for m in await control.messages()]
        assert ids == [pending, recent]
        left = room.reader.execute(
            "SELECT count(*) FROM events WHERE message_id = ?", (old,)
        ).fetchone()[0]
        assert left == 0


async def test_nack_makes_message_ready_at_once_for_a_waiter(inproc: InProc) -> None:
    await setup_boxes(inproc, "alice")
    async with inproc.client() as control, inproc.client("alice") as alice:
        mid = (await control.post("operator", "alice", "again")).data["id"]
        await alice.recv()
        await alice.nack(mid)
        got = await alice.recv()
        assert (got.data["id"], got.data["attempt"]) == (mid, 2)


async def test_deleted_mailbox_keeps_its_mail_unless_purged(inproc: InProc) -> None:
    await setup_boxes(inproc, "alice", "bob")
    async with inproc.client() as control:
        kept = (await control.post("operator", "alice", "kept")).data["id"]
        await control.post("operator", "bob", "purged")
        r = await control.close("alice")
        assert (r.status, r.data) == (200, {"name": "alice", "deleted": True, "purged": False})
        assert (await control.post("operator", "alice", "x")).status == 404
        r = await control.call("DELETE", "/mailboxes/bob", params={"purge": "true"})
        assert (r.status, r.data["purged"]) == (200, True)
        assert await control.messages(agent="bob") == []
        assert (await control.close("alice")).data["deleted"] is False
        assert (await control.open("alice")).status == 201
    async with inproc.client("alice") as alice:
        got = await alice.recv()
        assert (got.data["id"], got.data["body"]) == (kept, "kept")

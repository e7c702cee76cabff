"""Every endpoint and error code of a real ``hive-broker`` process over real sockets."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator

import pytest

from tests.broker.client import BrokerClient, BrokerProcess, until_waiting
from tests.polling import until


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module (each test uses its own mailboxes): starts cost ~0.5 s."""
    proc = BrokerProcess(tmp_path_factory.mktemp("api") / "hive").start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log.read_text()


@pytest.fixture
def broker_proc(shared: BrokerProcess) -> BrokerProcess:
    return shared


async def test_mailbox_lifecycle_and_socket_modes(
    broker_proc: BrokerProcess, control: BrokerClient
) -> None:
    paths = broker_proc.paths
    assert stat.S_IMODE(os.stat(paths.broker_sock).st_mode) == 0o600
    r = await control.open("lc-a")
    assert (r.status, r.data) == (201, {"name": "lc-a", "created": True})
    r = await control.open("lc-a")
    assert (r.status, r.data["created"]) == (200, False)
    sock = paths.mailbox_sock("lc-a")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
    r = await control.open("hm1nd")  # the manager's alias opens `manager`
    assert (r.status, r.data["name"]) in ((200, "manager"), (201, "manager"))
    assert paths.mailbox_sock("manager").exists()
    for bad in ("Alice", "operator", "system", "toolongname1", "a..b"):
        r = await control.open(bad)
        assert (r.status, r.error_code) == (400, "bad_request"), bad
    # A stranger's file in the socket dir survives; the broker removes only its own socket.
    (sock.parent / "web.sock").write_text("not ours")
    r = await control.close("lc-a")
    assert (r.status, r.data["deleted"]) == (200, True)
    assert not sock.exists()
    assert (sock.parent / "web.sock").exists()
    r = await control.post("operator", "lc-a", "hi")
    assert (r.status, r.error_code) == (404, "not_found")


async def test_send_recv_ack_nack_renew(broker_proc: BrokerProcess, control: BrokerClient) -> None:
    await control.open("sr-a")
    await control.open("sr-b")
    async with (
        BrokerClient(broker_proc.paths.mailbox_sock("sr-a")) as alice,
        BrokerClient(broker_proc.paths.mailbox_sock("sr-b")) as bob,
    ):
        r = await alice.send("sr-b", "hello bob")
        assert r.status == 201
        mid = r.data["id"]
        r = await bob.recv(wait=5)
        assert r.status == 200
        assert r.data["id"] == mid
        assert r.data["from"] == "sr-a"
        assert r.data["to"] == "sr-b"
        assert r.data["body"] == "hello bob"
        assert r.data["attempt"] == 1
        assert r.data["sent_at"].endswith("Z")
        assert (await bob.renew(mid)).status == 200
        assert (await bob.nack(mid)).data == {}
        r = await bob.recv()
        assert (r.data["id"], r.data["attempt"]) == (mid, 2)
        r = await bob.ack(mid)
        assert (r.status, r.data) == (200, {})
        # Nothing left: recv with wait=0 answers 204 at once.
        assert (await bob.recv()).status == 204
        for verb in (bob.ack, bob.nack, bob.renew):
            r = await verb(mid)
            assert (r.status, r.error_code) == (409, "conflict")
        # `hm1nd` is an alias of `manager` in `to`.
        await control.open("manager")
        r = await alice.send("hm1nd", "to the manager")
        assert r.status == 201
        msgs = await control.messages(agent="hm1nd")
        assert [(m["from"], m["to"], m["state"]) for m in msgs] == [("sr-a", "manager", "ready")]


async def test_recv_wakes_on_commit(broker_proc: BrokerProcess, control: BrokerClient) -> None:
    await control.open("wk-a")
    async with BrokerClient(broker_proc.paths.mailbox_sock("wk-a")) as alice:
        waiting = asyncio.ensure_future(alice.recv(wait=30))
        await until_waiting(control, "wk-a")
        assert not waiting.done()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await control.post("operator", "wk-a", "wake up")
        assert r.status == 201
        got = await asyncio.wait_for(waiting, 5)
        assert got.data["body"] == "wake up"
        assert loop.time() - t0 < 1.0
        # The woken reader is handed the row from the send, not read back:
        # it must be exactly what is on disk.
        (stored,) = await control.messages(agent="wk-a")
        assert got.data == {
            "id": r.data["id"],
            "from": "operator",
            "to": "wk-a",
            "body": "wake up",
            "sent_at": stored["sent_at"],
            "attempt": 1,
        }
        assert (stored["id"], stored["body"], stored["state"]) == (
            r.data["id"],
            "wake up",
            "leased",
        )


async def test_idempotency_key(broker_proc: BrokerProcess, control: BrokerClient) -> None:
    await control.open("id-a")
    await control.open("id-b")
    async with BrokerClient(broker_proc.paths.mailbox_sock("id-a")) as alice:
        first = await alice.send("id-b", "once", key="k-1")
        again = await alice.send("id-b", "once", key="k-1")
        assert (first.status, again.status) == (201, 200)
        assert first.data["id"] == again.data["id"]
    # The same key from another sender is another message.
    other = await control.post("operator", "id-b", "once", key="k-1")
    assert other.status == 201
    assert other.data["id"] != first.data["id"]
    assert len(await control.messages(agent="id-b")) == 2


async def test_identity_is_the_socket(broker_proc: BrokerProcess, control: BrokerClient) -> None:
    """From a's socket there is no way to read b's inbox or to send as b."""
    for name in ("is-a", "is-b", "is-c"):
        await control.open(name)
    await control.post("operator", "is-b", "for bob only")
    async with (
        BrokerClient(broker_proc.paths.mailbox_sock("is-a")) as alice,
        BrokerClient(broker_proc.paths.mailbox_sock("is-b")) as bob,
        BrokerClient(broker_proc.paths.mailbox_sock("is-c")) as carol,
    ):
        assert (await alice.recv()).status == 204
        r = await alice.call("POST", "/send", {"from": "is-b", "to": "is-c", "body": "spoof"})
        assert r.status == 201
        got = await carol.recv()
        assert got.data["from"] == "is-a"
        # The control API is not on an agent socket.
        for method, path in (("GET", "/messages"), ("GET", "/stats"), ("PUT", "/mailboxes/x")):
            r = await alice.call(method, path)
            assert r.status in (404, 405)
            assert "error" in r.data
        # Acking bob's leased message from alice's socket is refused.
        leased = await bob.recv()
        r = await alice.ack(leased.data["id"])
        assert (r.status, r.error_code) == (409, "conflict")
        assert (await bob.ack(leased.data["id"])).status == 200


async def test_control_send_and_operator_mailbox(
    broker_proc: BrokerProcess, control: BrokerClient
) -> None:
    await control.open("cs-a")
    r = await control.post("system", "cs-a", "from the system")
    assert r.status == 201
    r = await control.post("cs-a", "cs-a", "pretending")
    assert (r.status, r.error_code) == (400, "bad_request")
    async with BrokerClient(broker_proc.paths.mailbox_sock("cs-a")) as alice:
        r = await alice.send("operator", "hello operator")
        assert r.status == 201
    msgs = [m for m in await control.messages(agent="operator") if m["to"] == "operator"]
    assert [(m["from"], m["body"], m["state"]) for m in msgs] == [
        ("cs-a", "hello operator", "acked")
    ]


async def test_messages_paging(broker_proc: BrokerProcess, control: BrokerClient) -> None:
    await control.open("pg-a")
    ids = [(await control.post("operator", "pg-a", f"m{i}")).data["id"] for i in range(5)]
    page = await control.messages(agent="pg-a", limit=2)
    assert [m["id"] for m in page] == ids[:2]
    page = await control.messages(agent="pg-a", after=ids[1], limit=1000)
    assert [m["id"] for m in page] == ids[2:]
    for params in ({"limit": 0}, {"limit": 1001}, {"after": "x"}, {"agent": "Bad!"}):
        r = await control.call("GET", "/messages", params=params)
        assert (r.status, r.error_code) == (400, "bad_request"), params


async def test_stats_and_healthz(broker_proc: BrokerProcess, control: BrokerClient) -> None:
    await control.open("st-a")
    for i in range(3):
        await control.post("operator", "st-a", f"m{i}")
    async with BrokerClient(broker_proc.paths.mailbox_sock("st-a")) as alice:
        await alice.recv()
        assert (await alice.call("GET", "/healthz")).data == {"ok": True, "mailbox": "st-a"}
    r = await control.call("GET", "/stats")
    assert r.status == 200
    assert r.data["mailboxes"]["st-a"] == {
        "depth": 2,
        "leased": 1,
        "waiting": 0,
        "acked": 0,
        "dead": 0,
        "open": True,
    }
    assert r.data["totals"]["messages"] >= 3
    r = await control.call("GET", "/healthz")
    assert (r.status, r.data["ok"]) == (200, True)


async def test_error_codes(broker_proc: BrokerProcess, control: BrokerClient) -> None:
    await control.open("er-a")
    async with BrokerClient(broker_proc.paths.mailbox_sock("er-a")) as alice:
        cases = [
            (alice.call("POST", "/send", content=b"\xff\xfe{}"), 400, "bad_request"),
            (alice.call("POST", "/send", content=b"{not json"), 400, "bad_request"),
            (alice.call("POST", "/send", content=b"[1, 2]"), 400, "bad_request"),
            (alice.send("er-a", 5), 400, "bad_request"),  # type: ignore[arg-type]
            (alice.call("POST", "/send", {"to": "er-a"}), 400, "bad_request"),
            (alice.call("POST", "/send", {"to": "er-a", "body": "\ud800"}), 400, "bad_request"),
            (alice.send("nobody", "x"), 404, "not_found"),
            (alice.send("system", "x"), 404, "not_found"),
            (alice.send("er-a", "x" * (64 * 1024 + 1)), 413, "too_large"),
            (alice.call("POST", "/send", content=b"x" * (1 << 20)), 413, "too_large"),
            (alice.call("POST", "/ack", {"id": "1"}), 400, "bad_request"),
            (alice.call("POST", "/ack", {"id": True}), 400, "bad_request"),
            (alice.call("POST", "/ack", {}), 400, "bad_request"),
            (alice.ack(12345), 409, "conflict"),
            (alice.call("GET", "/recv", params={"wait": "soon"}), 400, "bad_request"),
            (alice.call("GET", "/recv", params={"wait": "-1"}), 400, "bad_request"),
            (alice.call("GET", "/nowhere"), 404, "not_found"),
            (alice.call("DELETE", "/send"), 405, "method_not_allowed"),
            (control.call("GET", "/stream", headers={"Last-Event-ID": "x"}), 400, "bad_request"),
        ]
        for call, status, code in cases:
            r = await call
            assert (r.status, r.error_code) == (status, code), r
        # Exactly 64 KiB of UTF-8 is allowed.
        assert (await alice.send("er-a", "é" * (32 * 1024))).status == 201


async def test_hung_up_long_poll_takes_nothing(
    broker_proc: BrokerProcess, control: BrokerClient
) -> None:
    """A recv whose client went away must not lease the next message to a dead socket."""
    await control.open("hu-a")
    sock = broker_proc.paths.mailbox_sock("hu-a")
    gone = BrokerClient(sock)
    parked = asyncio.ensure_future(gone.recv(wait=30))
    await until_waiting(control, "hu-a")
    parked.cancel()
    await gone.http.aclose()

    async def nobody_waiting() -> bool:
        return not (await control.call("GET", "/stats")).data["mailboxes"]["hu-a"]["waiting"]

    await until(nobody_waiting, "the broker to notice the hang-up", timeout=5)
    mid = (await control.post("operator", "hu-a", "for the living")).data["id"]
    async with BrokerClient(sock) as alive:
        got = await alive.recv()
        assert (got.data["id"], got.data["attempt"]) == (mid, 1)

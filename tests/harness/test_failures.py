"""Failing turns: model errors, stalls, a harness killed mid-turn, a prompt too long.

Each uses the real claude CLI against the demo model; the ``[fake:…-once-<key>]``
markers make the model fail only on the first request that carries them.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.harness.conftest import Hive
from tests.harness.hive import claude_pids, group_alive, start_broker, stop
from tests.polling import wait_until


def _echo(hive: Hive, body: str) -> bool:
    return any(m["body"] == "echo: " + body for m in hive.broker.messages("operator"))


@pytest.mark.slow
def test_too_long_compacts_once_and_model_errors_nack_and_redeliver(hive: Hive) -> None:
    bob = hive.harness("bob")
    # In a fresh conversation claude cannot compact by itself and gives up: the harness
    # runs /compact once and retries. (Later, claude compacts on its own first.)
    body = "[fake:too-long-once-c1] summarise this"
    hive.broker.send("bob", body)
    wait_until(lambda: _echo(hive, body), "the retried turn's echo", timeout=60)
    (first,) = wait_until(bob.turn_ends, "the first turn to end", timeout=20)
    assert first["ok"]
    notes = [e["data"]["text"] for e in bob.events() if e["kind"] == "note"]
    assert "prompt is too long: compacting once" in notes
    assert notes.count("claude started") == 3  # the turn, /compact, the retry

    body = "[fake:error-once-r1] ping"
    hive.broker.send("bob", body)
    wait_until(lambda: _echo(hive, body), "the redelivered turn's echo", timeout=60)
    wait_until(lambda: len(bob.turn_ends()) == 3, "the redelivered turn to end", timeout=20)
    _, failed, redelivered = bob.turn_ends()
    assert not failed["ok"] and "500" in failed["error"] and failed["is_error"] is True
    assert redelivered["ok"]
    starts = [e["data"]["message"] for e in bob.events() if e["kind"] == "turn_start"][1:]
    assert [m["attempt"] for m in starts] == [1, 2]
    assert len({m["id"] for m in starts}) == 1


@pytest.mark.slow
def test_stalled_turn_is_killed_with_its_process_group(hive: Hive) -> None:
    bob = hive.harness("bob", extra_args=["--turn-timeout", "2"])
    hive.broker.send("bob", "[fake:stall] hold on")
    end = wait_until(bob.turn_ends, "the stalled turn to end", timeout=40)[0]
    assert end["timed_out"] is True and end["ok"] is False and end["error"] == "turn timed out"
    assert not group_alive(claude_pids(bob)[0])
    # the redelivered attempt stalls again; SIGTERM stops it and hands the message back
    wait_until(lambda: len(claude_pids(bob)) == 2, "the second attempt's claude", timeout=20)
    bob.stop()
    assert bob.proc is not None and bob.proc.returncode == 0
    stopped = bob.turn_ends()[1]
    assert stopped["error"] == "stopped: the harness is shutting down" and not stopped["ok"]
    assert not group_alive(claude_pids(bob)[1])
    assert not (bob.state / "inflight.json").exists()


@pytest.mark.slow
def test_harness_killed_mid_turn_redelivers_after_restart(hive: Hive) -> None:
    bob = hive.harness("bob")
    body = "[fake:stall-once-k9] are you there"
    hive.broker.send("bob", body)
    inflight = bob.state / "inflight.json"
    record = wait_until(
        lambda: inflight.exists() and json.loads(inflight.read_text()).get("pgid") and inflight,
        "inflight.json with claude's group",
        timeout=20,
    )
    pgid = json.loads(record.read_text())["pgid"]
    wait_until(
        lambda: any("stall-once-k9" in json.dumps(r["body"]) for r in hive.model.requests()),
        "claude's request to stall in the model",
        timeout=20,
    )
    assert bob.proc is not None
    os.kill(bob.proc.pid, signal.SIGKILL)
    bob.proc.wait()
    assert group_alive(pgid)  # the orphaned turn still runs
    bob.start()
    wait_until(lambda: _echo(hive, body), "the redelivered turn's echo", timeout=60)
    wait_until(bob.turn_ends, "the redelivered turn to end", timeout=20)
    assert not group_alive(pgid)
    notes = [e["data"]["text"] for e in bob.events() if e["kind"] == "note"]
    assert any(n.startswith("recovered: message") for n in notes)
    starts = [e["data"]["message"] for e in bob.events() if e["kind"] == "turn_start"]
    assert [m["attempt"] for m in starts] == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("broker", [1.0], indirect=True, ids=["lease-1s"])
def test_a_turn_longer_than_the_lease_keeps_it_by_renewing(hive: Hive) -> None:
    bob = hive.harness("bob", extra_args=["--renew-seconds", "0.3"])
    hive.broker.send("bob", "[fake:slow-2.5] take your time")
    (end,) = wait_until(bob.turn_ends, "the slow turn", timeout=60)
    assert end["ok"] and end["claude_seconds"] > 2.5
    notes = [e["data"]["text"] for e in bob.events() if e["kind"] == "note"]
    assert not any(n.startswith("ack/nack failed") for n in notes), notes
    assert [e["turn"] for e in bob.events() if e["kind"] == "turn_start"] == [1]


@pytest.mark.slow
def test_harness_rides_out_a_broker_restart(hive: Hive) -> None:
    bob = hive.harness("bob")
    stop(hive.broker.proc)  # the broker goes away under a harness waiting in recv
    wait_until(lambda: "recv failed" in bob.log.read_text(), "the harness to notice", timeout=20)
    hive.broker = start_broker(hive.home / "hive")  # re-creates bob's socket from its store
    try:
        hive.broker.send("bob", "still there?")
        wait_until(lambda: _echo(hive, "still there?"), "the echo after restart", timeout=60)
    finally:
        bob.stop()
        stop(hive.broker.proc)

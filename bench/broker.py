"""Benchmark hive-broker: wake latency, durable send throughput, and the raw-sqlite baseline.

Run: ``.venv/bin/python bench/broker.py`` (about a minute). It starts a real
``hive-broker`` process in a temporary home and drives it with a lean client
(raw asyncio unix-socket streams speaking minimal HTTP/1.1 keep-alive, on
uvloop) spread over several worker processes, because one httpx client
saturates a core long before the broker does and would measure itself.

1. Wake latency: 100 agents each long-poll ``GET /recv?wait=30`` on their own
   socket (2 worker processes); the parent sends one message at a time over the
   control socket (2000 of them, to random agents, 2 ms apart after each
   ``201``); a receiver computes send→recv from the CLOCK_MONOTONIC stamp in
   the body (system-wide, so comparable across processes). Both stamps are
   taken in the clients, so the figure includes both HTTP round trips.
2. Throughput: 100 agents each send as fast as they can from their own socket
   (4 worker processes, 25 connections each); every 201 is a committed send.
   The writer's mean batch (jobs per commit) is printed from ``/stats``.
3. Baseline, same run, same disk: raw sqlite in the broker's shape — 100
   producer threads each waiting for its row's commit, one writer thread
   group-committing the broker's two rows per message (message + event) with
   WAL and ``synchronous=FULL``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hyperhive import sqlite as hive_sqlite  # noqa: E402
from hyperhive.broker.store import MIGRATIONS  # noqa: E402
from hyperhive.paths import Paths  # noqa: E402

AGENTS = 100
#: Enough that the p99 is the 20th-worst sample, not a handful of outliers.
LATENCY_MESSAGES = 2000
THROUGHPUT_SECONDS = 5.0
BASELINE_SECONDS = 5.0
HIVE_BROKER = str(Path(sys.executable).parent / "hive-broker")


class Conn:
    """One keep-alive HTTP/1.1 connection over a unix socket."""

    def __init__(self, sock: Path) -> None:
        self.sock = sock
        self.r: asyncio.StreamReader
        self.w: asyncio.StreamWriter

    async def open(self) -> Conn:
        self.r, self.w = await asyncio.open_unix_connection(str(self.sock))
        return self

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        self.w.write(
            f"{method} {path} HTTP/1.1\r\nhost: b\r\ncontent-length: {len(data)}\r\n\r\n".encode()
            + data
        )
        status = int((await self.r.readuntil(b"\r\n")).split()[1])
        length = 0
        while (line := await self.r.readuntil(b"\r\n")) != b"\r\n":
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        raw = await self.r.readexactly(length) if length else b""
        return status, json.loads(raw) if raw else None


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


# --- worker processes -------------------------------------------------------------


async def receiver(paths: Paths, names: list[str], quota: int) -> None:
    """Long-poll on each agent's socket; report send→recv latencies on stdout."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def agent(name: str) -> None:
        c = await Conn(paths.mailbox_sock(name)).open()
        print(json.dumps({"ready": name}), flush=True)
        while not done.is_set():
            status, msg = await c.call("GET", "/recv?wait=30")
            if status != 200:
                continue
            now = time.monotonic()
            latencies.append(now - json.loads(msg["body"])["t0"])
            await c.call("POST", "/ack", {"id": msg["id"]})
            if len(latencies) >= quota:
                done.set()

    tasks = [asyncio.create_task(agent(n)) for n in names]
    await done.wait()
    for t in tasks:
        t.cancel()
    print(json.dumps({"latencies": latencies}), flush=True)


async def sender(paths: Paths, names: list[str], start_at: float, seconds: float) -> None:
    """Send from each agent's socket as fast as it answers; report the count of 201s."""
    conns = [await Conn(paths.mailbox_sock(n)).open() for n in names]
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    stop = start_at + seconds
    sent = 0
    body = "x" * 200

    async def loop(c: Conn) -> None:
        nonlocal sent
        while time.monotonic() < stop:
            status, _ = await c.call("POST", "/send", {"to": "sink", "body": body})
            if status == 201:
                sent += 1

    await asyncio.gather(*(loop(c) for c in conns))
    print(json.dumps({"sent": sent, "end": time.monotonic()}), flush=True)


def worker_main(args: argparse.Namespace) -> None:
    paths = Paths.from_home(Path(args.home))
    names = args.names.split(",")
    if args.worker == "recv":
        uvloop.run(receiver(paths, names, args.quota))
    else:
        uvloop.run(sender(paths, names, args.start_at, args.seconds))


# --- the parent ---------------------------------------------------------------------


def spawn(home: Path, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--home", str(home), *argv],
        stdout=subprocess.PIPE,
        text=True,
    )


def read_result(proc: subprocess.Popen[str], key: str) -> Any:
    assert proc.stdout is not None
    for line in proc.stdout:
        data = json.loads(line)
        if key in data:
            return data[key]
    raise RuntimeError(f"worker ended without {key!r}")


async def latency_run(home: Path, paths: Paths, names: list[str]) -> dict[str, float]:
    halves = [names[: AGENTS // 2], names[AGENTS // 2 :]]
    per_worker = LATENCY_MESSAGES // 2
    workers = [
        spawn(home, "--worker", "recv", "--names", ",".join(h), "--quota", str(per_worker))
        for h in halves
    ]
    for w, half in zip(workers, halves, strict=True):
        for _ in half:
            await asyncio.to_thread(read_result, w, "ready")
    control = await Conn(paths.broker_sock).open()
    # Wait until every long-poll is parked in the broker.
    while True:
        _, stats = await control.call("GET", "/stats")
        if sum(stats["mailboxes"][n]["waiting"] for n in names) == AGENTS:
            break
        await asyncio.sleep(0.05)
    send_rtt = []
    order = [names[i % AGENTS] for i in range(LATENCY_MESSAGES)]
    random.shuffle(order)
    for to in order:
        t0 = time.monotonic()
        status, _ = await control.call(
            "POST", "/send", {"from": "operator", "to": to, "body": json.dumps({"t0": t0})}
        )
        send_rtt.append(time.monotonic() - t0)
        assert status == 201
        await asyncio.sleep(0.002)  # one message in flight at a time: latency, not load
    lat: list[float] = []
    for w in workers:
        lat += await asyncio.to_thread(read_result, w, "latencies")
        w.wait()
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": pct(lat, 0.99) * 1e3,
        "max_ms": max(lat) * 1e3,
        "send_201_p50_ms": statistics.median(send_rtt) * 1e3,
        "n": len(lat),
    }


async def throughput_run(home: Path, names: list[str]) -> dict[str, float]:
    start_at = time.monotonic() + 2.0
    quarters = [names[i::4] for i in range(4)]
    workers = [
        spawn(
            home,
            "--worker",
            "send",
            "--names",
            ",".join(q),
            "--start-at",
            str(start_at),
            "--seconds",
            str(THROUGHPUT_SECONDS),
        )
        for q in quarters
    ]
    results = [await asyncio.to_thread(read_result, w, "sent") for w in workers]
    for w in workers:
        w.wait()
    total = sum(results)
    return {"messages": total, "per_second": total / THROUGHPUT_SECONDS}


def baseline(db: Path) -> dict[str, float]:
    """Raw sqlite in the broker's shape: producers wait for their row's group commit."""
    conn = hive_sqlite.connect(db, MIGRATIONS, check_same_thread=False)
    jobs: queue.SimpleQueue[threading.Event | None] = queue.SimpleQueue()
    stop_at = time.monotonic() + BASELINE_SECONDS
    committed = 0
    batches = 0
    body = "x" * 200

    def writer() -> None:
        nonlocal committed, batches
        while True:
            batch = [jobs.get()]
            while True:
                try:
                    batch.append(jobs.get_nowait())
                except queue.Empty:
                    break
            live = [e for e in batch if e is not None]
            if live:
                now = time.time()
                conn.execute("BEGIN IMMEDIATE")
                for _ in live:
                    cur = conn.execute(
                        "INSERT INTO messages (sender, recipient, body, sent_at)"
                        " VALUES (?, ?, ?, ?)",
                        ("a", "sink", body, now),
                    )
                    conn.execute(
                        "INSERT INTO events (kind, message_id, at, data) VALUES (?, ?, ?, ?)",
                        ("send", cur.lastrowid, now, "{}"),
                    )
                conn.execute("COMMIT")
                committed += len(live)
                batches += 1
                for e in live:
                    e.set()
            if len(live) < len(batch):
                return

    def producer() -> None:
        done = threading.Event()
        while time.monotonic() < stop_at:
            done.clear()
            jobs.put(done)
            done.wait()

    w = threading.Thread(target=writer)
    w.start()
    producers = [threading.Thread(target=producer) for _ in range(AGENTS)]
    t0 = time.monotonic()
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    elapsed = time.monotonic() - t0
    jobs.put(None)
    w.join()
    conn.close()
    return {
        "per_second": committed / elapsed,
        "rows": committed,
        "mean_batch": committed / max(batches, 1),
    }


def fsync_probe(db: Path, n: int = 500) -> tuple[float, float]:
    """p50 and p99 of one lone insert+commit (WAL, FULL): the floor under any wake latency."""
    conn = hive_sqlite.connect(db, MIGRATIONS)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO messages (sender, recipient, body, sent_at) VALUES ('a', 'b', 'x', 0)"
        )
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t0)
    conn.close()
    return statistics.median(times) * 1e3, pct(times, 0.99) * 1e3


async def parent() -> None:
    home = Path(tempfile.mkdtemp(prefix="hive-bench-"))
    paths = Paths.from_home(home)
    log = (home / "broker.log").open("w")
    broker = subprocess.Popen(
        [HIVE_BROKER, "serve", "--home", str(home)], stderr=log, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 20
        while not paths.broker_sock.exists():
            if time.monotonic() > deadline or broker.poll() is not None:
                raise RuntimeError("broker did not start; see " + str(home / "broker.log"))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        control = await Conn(paths.broker_sock).open()
        names = [f"a{i}" for i in range(AGENTS)]
        for n in [*names, "sink"]:
            status, _ = await control.call("PUT", f"/mailboxes/{n}")
            assert status in (200, 201)
        print(f"hive-broker benchmark — {os.cpu_count()} cores, {AGENTS} agents")
        lat = await latency_run(home, paths, names)
        print(
            f"wake latency send→recv ({lat['n']} msgs, one in flight): "
            f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms"
            f"  (goal p50 ≤ 2, p99 ≤ 10; send 201 p50 {lat['send_201_p50_ms']:.2f} ms)"
        )
        _, before = await control.call("GET", "/stats")
        thr = await throughput_run(home, names)
        _, after = await control.call("GET", "/stats")
        wr = {k: after["writer"][k] - before["writer"][k] for k in ("jobs", "batches")}
        print(
            f"durable send throughput, {AGENTS} concurrent senders: "
            f"{thr['per_second']:.0f} msg/s ({thr['messages']:.0f} in {THROUGHPUT_SECONDS:.0f} s;"
            f" goal ≥ 2000; writer mean batch {wr['jobs'] / max(wr['batches'], 1):.1f} jobs)"
        )
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(30)
        log.close()
    base = await asyncio.to_thread(baseline, home / "baseline.sqlite")
    print(
        f"baseline raw sqlite (WAL, synchronous=FULL, {AGENTS} producer threads, one"
        f" group-committing writer): {base['per_second']:.0f} msg/s"
        f" (mean batch {base['mean_batch']:.1f})"
    )
    print(f"ratio broker / raw sqlite: {thr['per_second'] / base['per_second']:.2f}")
    probe50, probe99 = await asyncio.to_thread(fsync_probe, home / "probe.sqlite")
    load = os.getloadavg()[0]
    print(
        f"context: one lone commit (fsync) p50 {probe50:.2f} ms, p99 {probe99:.2f} ms;"
        f" load average {load:.1f}"
    )
    shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=["recv", "send"])
    parser.add_argument("--home")
    parser.add_argument("--names")
    parser.add_argument("--quota", type=int, default=0)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
    else:
        uvloop.run(parent())


if __name__ == "__main__":
    main()

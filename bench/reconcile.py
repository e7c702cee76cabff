"""hive-c0re benchmarks: no-op pass over 1,000 agents, commit → apply latency, RSS.

Runs the real loop over a real applied repo (pygit2) and a real c0re.sqlite
on the in-memory runtime, so what is measured is c0re itself. Baselines
from the same run: reading the 1,000 agent.yaml blobs of HEAD without
validating them, and the first (cold) validation of every folder.

    .venv/bin/python bench/reconcile.py [--agents 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pygit2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hyperhive.paths import Paths
from hyperhive.reconciler import gitrepo
from hyperhive.reconciler.desired import DesiredLoader
from hyperhive.reconciler.loop import LoopSettings, Reconciler
from hyperhive.reconciler.status import StatusStore
from tests.fakes.memory_runtime import MemoryRuntime

REV = "bench"


def agent_yaml(name: str, model: str = "haiku") -> bytes:
    return (
        f"apiVersion: hyperhive.dev/v1\nkind: Agent\nmetadata:\n  name: {name}\n"
        f"spec:\n  role: agent\n  state: running\n  model: {model}\n"
        f"  systemPrompt: You are {name}.\n  packages: [ripgrep, jq]\n"
    ).encode()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def baseline_read_blobs(repo: pygit2.Repository) -> float:
    t0 = time.perf_counter()
    tree = repo[repo.head.target].peel(pygit2.Commit).tree
    total = 0
    for entry in tree:
        sub = repo[entry.id].peel(pygit2.Tree)
        total += len(repo[sub["agent.yaml"].id].peel(pygit2.Blob).data)
    return time.perf_counter() - t0


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = Paths.from_home(Path(tmp) / "hive")
        gitrepo.ensure_repos(paths.applied, paths.proposed, manager=False)
        names = [f"a{i:04d}" for i in range(n)]
        t0 = time.perf_counter()
        gitrepo.commit_files(
            paths.applied, {f"{x}/agent.yaml": agent_yaml(x) for x in names}, "bench", {}
        )
        commit_s = time.perf_counter() - t0
        repo = pygit2.Repository(str(paths.applied))
        blobs_s = baseline_read_blobs(repo)
        cold = DesiredLoader(repo, REV)
        t0 = time.perf_counter()
        cold.load(str(repo.head.target), port_in_use=lambda p: False)
        cold_s = time.perf_counter() - t0

        rt = MemoryRuntime()
        rec = Reconciler(
            paths=paths,
            runtime=rt,
            store=StatusStore(paths.c0re_db),
            hyperhive_rev=REV,
            settings=LoopSettings(manager=False, concurrency=64),
            rng=random.Random(1),
            port_in_use=lambda p: False,
        )
        t0 = time.perf_counter()
        for _ in range(10):
            await rec.reconcile_dirty()
            await rec.wait_idle()
            if not rec._dirty and not rec._all_dirty:
                break
        converge_s = time.perf_counter() - t0
        assert all(rt.agents[x].phase == "running" for x in names)

        noop = []
        for _ in range(15):
            rec.enqueue()
            t0 = time.perf_counter()
            await rec.reconcile_dirty()
            noop.append(time.perf_counter() - t0)
        applied_before = rec.applied_actions

        # commit → runtime apply, with the loop running as in hive-c0re serve.
        latencies = []
        after_commit = []

        async def run_loop() -> None:
            async with asyncio.TaskGroup() as tg:
                await rec.run(tg)

        runner = asyncio.create_task(run_loop())
        await rec.watching.wait()
        for i in range(10):
            target = names[i * 7 % n]
            before = rt.calls[("update", target)]
            t0 = time.perf_counter()
            await asyncio.to_thread(
                gitrepo.commit_files,
                paths.applied,
                {f"{target}/agent.yaml": agent_yaml(target, model=f"m{i}")},
                f"edit {target}",
                {},
            )
            t1 = time.perf_counter()
            while rt.calls[("update", target)] == before:
                rt.applied.clear()
                await asyncio.wait_for(rt.applied.wait(), 10)
            latencies.append(time.perf_counter() - t0)
            after_commit.append(time.perf_counter() - t1)
        rss = rss_mb()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        rec.store.close()

    print(f"hive-c0re reconcile benchmark, {n} agents (memory runtime, real git + sqlite)")
    print(f"  commit of {n} agent folders (commit_files):        {ms(commit_s)}")
    print(f"  baseline: read {n} agent.yaml blobs from HEAD:     {ms(blobs_s)}")
    print(f"  cold load + validation of {n} folders:             {ms(cold_s)}")
    print(f"  first convergence (create+start {n}):              {ms(converge_s)}")
    print(
        f"  no-op pass over {n} agents: median {ms(statistics.median(noop))}, "
        f"max {ms(max(noop))} (goal <= 200 ms); actions applied: "
        f"{rec.applied_actions - applied_before - len(latencies)}"
    )
    print(
        f"  commit -> runtime apply: median {ms(statistics.median(latencies))}, "
        f"max {ms(max(latencies))} (goal <= 1 s); from the new HEAD alone: median "
        f"{ms(statistics.median(after_commit))}, max {ms(max(after_commit))}"
    )
    print(f"  RSS with {n} agents: {rss:.0f} MB (goal <= 150 MB)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    asyncio.run(main(ap.parse_args().agents))

"""Benchmarks of the approval gate and the dashboard (docs/benchmarks.md).

1. Approve click → runtime apply called (goal ≤ 1 s): a real hive-c0re in
   process — real git repos, c0re.sqlite, reconcile loop, admin, the
   operator-plane extension and the dashboard on a real uvicorn port — with
   the in-memory runtime recording when ``apply`` is called. The click is an
   HTTP POST of the approve form (as hive.js sends it).
2. Dashboard page with 1,000 agents and 100 pending approvals (goal ≤ 200 ms
   server time): the agents page and the approvals page (with 100 rendered
   diffs), requested through the ASGI app in process, so the figure is server
   time with no network or browser in it.

Run: ``.venv/bin/python bench/dashboard.py`` from the checkout.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pygit2
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hyperhive import jsonlines
from hyperhive.paths import Paths
from hyperhive.reconciler import gitrepo
from hyperhive.reconciler.admin import Admin
from hyperhive.reconciler.approvals import ApprovalQueue
from hyperhive.reconciler.broker_client import BrokerClient
from hyperhive.reconciler.daemon import Hive, ServeOptions
from hyperhive.reconciler.dashboard import extension
from hyperhive.reconciler.dashboard.app import DashboardApp
from hyperhive.reconciler.dashboard.auth import OperatorAuth
from hyperhive.reconciler.dashboard.bus import StatusBus
from hyperhive.reconciler.dashboard.commands import approval_commands
from hyperhive.reconciler.dashboard.relay import BrokerLink
from hyperhive.reconciler.loop import LoopSettings, Reconciler
from hyperhive.reconciler.runtimes.base import Action, ActionKind
from hyperhive.reconciler.status import AgentStatus, Condition, StatusStore
from tests.fakes.memory_runtime import MemoryRuntime

ROUNDS = 20
PAGE_REQUESTS = 20


def agent_yaml(name: str, model: str = "haiku") -> bytes:
    doc = {"apiVersion": "hyperhive.dev/v1", "kind": "Agent", "metadata": {"name": name},
           "spec": {"role": "agent", "state": "running", "model": model}}  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False).encode()


class TimedRuntime(MemoryRuntime):
    """Records when the loop calls ``apply`` for an UPDATE, keyed by agent."""

    def __init__(self) -> None:
        super().__init__()
        self.update_called: dict[str, float] = {}
        self.update_seen = asyncio.Event()

    async def apply(self, action: Action) -> None:
        if action.kind is ActionKind.UPDATE:
            self.update_called[action.name] = time.perf_counter()
            self.update_seen.set()
        await super().apply(action)


async def approve_to_apply(home: Path) -> list[float]:
    paths = Paths.from_home(home)
    paths.run.mkdir(parents=True)
    gitrepo.ensure_repos(paths.applied, paths.proposed)
    gitrepo.commit_files(paths.applied, {"alice/agent.yaml": agent_yaml("alice")}, "alice", {})
    store = StatusStore(paths.c0re_db)
    runtime = TimedRuntime()
    reconciler = Reconciler(paths=paths, runtime=runtime, store=store, hyperhive_rev="bench",
                            settings=LoopSettings(resync_seconds=600))  # fmt: skip
    admin = Admin(paths, store, reconciler, runtime, None, "bench")
    config = {"dashboard": {"port": 0}, "broker": {}, "c0re": {}}
    options = ServeOptions(paths=paths, config=config)
    hive = Hive(options, store, runtime, BrokerClient(paths.broker_sock), reconciler, admin,
                asyncio.Event())  # fmt: skip
    latencies: list[float] = []
    try:
        async with asyncio.TaskGroup() as tg:
            work = tg.create_task(reconciler.run(tg))
            await extension.start(hive, tg)
            await reconciler.reconcile_and_wait()
            url = (paths.run / "dashboard.url").read_text().strip()
            token = paths.operator_token.read_text().strip()
            auth = OperatorAuth(token)
            async with httpx.AsyncClient(base_url=url, cookies={"hive_session": auth.session}) as c:
                for i in range(ROUNDS):
                    await merged(paths)  # c0re merges applied into proposed (in a thread)
                    sha = gitrepo.commit_files(
                        paths.proposed, {"alice/agent.yaml": agent_yaml("alice", f"m{i}")},
                        f"round {i}", {},
                    )  # fmt: skip
                    answer = await admin.handle({"cmd": "pending"})
                    assert not answer["approvals"]
                    approval_id = (await verbs_request(paths, sha))["id"]
                    runtime.update_seen.clear()
                    runtime.update_called.pop("alice", None)
                    t0 = time.perf_counter()
                    r = await c.post(
                        f"/approvals/{approval_id}/approve",
                        data={"csrf": auth.csrf},
                        headers={"X-Hive-Fetch": "1"},
                    )
                    assert r.status_code == 200, r.text
                    await asyncio.wait_for(runtime.update_seen.wait(), 10)
                    latencies.append(runtime.update_called["alice"] - t0)
            work.cancel()
            raise _Done  # noqa: TRY301 - leave the TaskGroup, cancelling what it owns
    except* _Done:
        pass
    finally:
        store.close()
    return latencies


async def merged(paths: Paths) -> None:
    """Until proposed contains applied HEAD, so the manager commits on top of it."""
    for _ in range(1000):
        applied = pygit2.Repository(str(paths.applied)).head.target
        proposed = pygit2.Repository(str(paths.proposed))
        base = proposed.merge_base(applied, proposed.head.target) if applied in proposed else None
        if base == applied:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("applied was never merged into proposed")


async def verbs_request(paths: Paths, sha: str) -> dict[str, object]:
    answer = await jsonlines.request(paths.c0re_sock, {"cmd": "request_apply_commit", "sha": sha})
    assert answer["ok"], answer
    return answer


class _Done(Exception):
    pass


async def big_pages(home: Path) -> dict[str, list[float]]:
    paths = Paths.from_home(home)
    paths.run.mkdir(parents=True)
    gitrepo.ensure_repos(paths.applied, paths.proposed)
    names = [f"a{i:04d}" for i in range(1000)]
    gitrepo.commit_files(paths.applied, {f"{n}/agent.yaml": agent_yaml(n) for n in names},
                         "1,000 agents", {})  # fmt: skip
    gitrepo.merge_into_proposed(paths.applied, paths.proposed)
    store = StatusStore(paths.c0re_db)
    now = "2026-11-26T10:00:00.000Z"
    conds = tuple(Condition(t, "True", "Fine", "", now) for t in
                  ("Ready", "Reconciled", "UpToDate", "LoggedIn"))  # fmt: skip
    store.write(AgentStatus(n, "0" * 40, "running", conds, "", 8100 + i % 900, False,
                            {"turns": 3, "cost_usd": 0.01, "last_turn_at": now}, now)
                for i, n in enumerate(names))  # fmt: skip
    runtime = MemoryRuntime()
    reconciler = Reconciler(paths=paths, runtime=runtime, store=store, hyperhive_rev="bench")
    admin = Admin(paths, store, reconciler, runtime, None, "bench")
    queue = ApprovalQueue(store.db, paths.applied, paths.proposed)
    for cmd, handler in approval_commands(queue).items():
        admin.commands[cmd] = extension._admin_handler(handler)
    for i in range(50):  # 50 edits of existing agents, 50 new agents
        sha = gitrepo.commit_files(paths.proposed, {f"a{i:04d}/agent.yaml":
                                   agent_yaml(f"a{i:04d}", "sonnet")}, f"edit {i}", {})  # fmt: skip
        queue.request_apply_commit(sha)
        queue.request_spawn(f"n{i:03d}", {"model": "haiku"})
    auth = OperatorAuth("bench-token")
    app = DashboardApp(admin.handle, auth, StatusBus(), BrokerLink(paths.broker_sock))
    out: dict[str, list[float]] = {}
    transport = httpx.ASGITransport(app=app.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7000",
                                 cookies={"hive_session": auth.session}) as c:  # fmt: skip
        for page in ("/", "/approvals"):
            times = []
            for _ in range(PAGE_REQUESTS):
                t0 = time.perf_counter()
                r = await c.get(page)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200
            out[page] = times
            print(f"  {page}: {len(r.content) / 1024:.0f} KiB")
    store.close()
    return out


def summary(label: str, values: list[float], goal: float) -> None:
    ms = sorted(v * 1000 for v in values)
    p50 = statistics.median(ms)
    p95 = ms[max(0, int(len(ms) * 0.95) - 1)]
    verdict = "ok" if p95 <= goal * 1000 else "OVER GOAL"
    print(f"{label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms "
          f"(n={len(ms)}, goal ≤ {goal * 1000:.0f} ms) {verdict}")  # fmt: skip


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as d:
        latencies = await approve_to_apply(Path(d) / "a")
        summary("approve click → runtime apply called", latencies, 1.0)
        pages = await big_pages(Path(d) / "b")
        summary("agents page, 1,000 agents + 100 pending", pages["/"], 0.2)
        cold = pages["/approvals"][0] * 1000
        print(f"  (approvals page first view, every diff computed: {cold:.0f} ms)")
        summary("approvals page, 100 pending with diffs", pages["/approvals"][1:], 0.2)


if __name__ == "__main__":
    asyncio.run(main())

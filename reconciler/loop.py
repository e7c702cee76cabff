"""The reconcile loop: triggers in, one pass per dirty agent, actions out.

Level-triggered, after controller-runtime: a trigger (a new applied HEAD, a
runtime event, admin ``reconcile``, the periodic resync) only marks agents
dirty. A pass re-reads applied HEAD and the runtime's observation, plans
each dirty agent with the pure :func:`~hyperhive.reconciler.plan.plan`, and
hands agents with actions to a worker (:mod:`~hyperhive.reconciler.worker`;
one per agent, a global concurrency limit). Agents without actions get
their status written in one batch, so a no-op pass over a thousand agents
is one read of git and one ``observe()``.

The only memory between passes is the retry schedule (backoff after a
temporary error, the commit a permanent error is waiting to see change) and
the operator's ``suspended`` flag in c0re.sqlite; none of it decides what
an agent should look like.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import pygit2

from hyperhive.clock import Clock, SystemClock
from hyperhive.names import MANAGER_AGENT
from hyperhive.paths import Paths
from hyperhive.reconciler import gitrepo, statusfile, triggers, worker
from hyperhive.reconciler.backoff import Retry, backoff_delay
from hyperhive.reconciler.broker_client import BrokerClient
from hyperhive.reconciler.conditions import Outcome, agent_status
from hyperhive.reconciler.desired import DesiredLoader, DesiredState, default_manager_yaml
from hyperhive.reconciler.plan import plan
from hyperhive.reconciler.runtimes.base import Action, ActionKind, Desired, Observed, Runtime
from hyperhive.reconciler.status import AgentStatus, Condition, Event, StatusStore

log = logging.getLogger(__name__)

#: An agent running this long past its last retry time starts afresh at 1 s.
HEALTHY_AFTER = 30.0


@dataclass(frozen=True)
class LoopSettings:
    resync_seconds: float = 60.0
    auto_update: bool = True
    concurrency: int = 8
    #: Keep hm1nd in applied, re-creating it without approval when it goes missing.
    manager: bool = True
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    #: watchfiles debounce/step (ms) on the applied repo's refs: well under the 1 s goal.
    watch_debounce_ms: int = 50
    watch_step_ms: int = 20


@dataclass
class Snapshot:
    """One read of both sides: what applied HEAD wants and what the runtime runs."""

    desired: DesiredState
    observed: dict[str, Observed]
    names: set[str] = field(default_factory=set)


class Reconciler:
    def __init__(
        self,
        *,
        paths: Paths,
        runtime: Runtime,
        store: StatusStore,
        hyperhive_rev: str,
        settings: LoopSettings | None = None,
        broker: BrokerClient | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        port_in_use: Callable[[int], bool] | None = None,
    ) -> None:
        self.paths = paths
        self.runtime = runtime
        self.store = store
        self.rev = hyperhive_rev
        self.settings = settings or LoopSettings()
        self.broker = broker
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self.port_in_use = port_in_use
        self.repo = pygit2.Repository(str(paths.applied))
        self.loader = DesiredLoader(self.repo, hyperhive_rev)
        self.retries: dict[str, Retry] = {}
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._wake = asyncio.Event()
        self._wake.set()
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._limit = asyncio.Semaphore(self.settings.concurrency)
        self._tg: asyncio.TaskGroup | None = None
        self._last_head: str | None = None
        self._merge_lock = asyncio.Lock()
        self._loose: set[asyncio.Future[None]] = set()
        #: Set after every finished pass (tests and ``reconcile`` wait on it).
        self.pass_done = asyncio.Condition()
        self.passes = 0
        #: Agents the operator asked to rebuild (admin ``rebuild``), consumed by a pass.
        self.rebuild_requested: set[str] = set()
        #: Set by admin ``shutdown``: passes stop acting so stopped agents stay stopped.
        self.stopping = False
        #: Set once the applied repo's refs are being watched.
        self.watching = asyncio.Event()
        self.applied_actions = 0

    # --- triggers (reconciler/triggers.py) --------------------------------------
    @property
    def last_head(self) -> str | None:
        """The applied HEAD the last pass read."""
        return self._last_head

    def enqueue(self, name: str | None = None, *, force: bool = False) -> None:
        """Mark one agent (None: all) dirty; ``force`` skips its backoff (new desired state)."""
        if name is None:
            self._all_dirty = True
            if force:
                for retry in self.retries.values():
                    retry.at = 0.0
        else:
            self._dirty.add(name)
            if force and name in self.retries:
                self.retries[name].at = 0.0
        self._wake.set()

    async def run(self, tg: asyncio.TaskGroup) -> None:
        """Dispatch passes forever; workers and watchers are owned by ``tg``."""
        self._tg = tg
        tg.create_task(triggers.watch_applied(self), name="watch-applied")
        tg.create_task(triggers.watch_runtime(self), name="watch-runtime")
        tg.create_task(triggers.resync(self), name="resync")
        tg.create_task(triggers.retry_timer(self), name="retry-timer")
        tg.create_task(statusfile.watch(self.store, self.paths.state / "agents"), name="status")
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.reconcile_dirty()
            await asyncio.sleep(0)  # let the workers this pass started begin first

    async def reconcile_dirty(self) -> None:
        names: set[str] | None = None if self._all_dirty else set(self._dirty)
        self._all_dirty = False
        self._dirty.clear()
        try:
            await self.reconcile(names)
        except Exception as e:  # a broken pass must not stop the loop; say why and retry
            log.exception("reconcile pass failed")
            self.store.log("", "pass_failed", str(e))
            self._all_dirty = True
            await asyncio.sleep(1.0)
            self._wake.set()

    async def wait_pass(self) -> None:
        async with self.pass_done:
            await self.pass_done.wait()

    # --- one pass ----------------------------------------------------------------
    def read_desired(self) -> DesiredState:
        """applied HEAD, validated (restoring hm1nd first when it is missing)."""
        head = gitrepo.head_commit(self.repo)
        if self.settings.manager and head is not None:
            commit = self.repo[head].peel(pygit2.Commit)
            if MANAGER_AGENT not in commit.tree:
                head = gitrepo.commit_files(
                    self.paths.applied,
                    {f"{MANAGER_AGENT}/agent.yaml": default_manager_yaml()},
                    f"Restore the manager {MANAGER_AGENT}",
                    {"Operator-Action": "restore-manager"},
                )
                self.store.log(MANAGER_AGENT, "restored", "hm1nd was missing from applied")
        return self.loader.load(
            head, previous_ports=self.store.web_ports(), port_in_use=self.port_in_use
        )

    async def snapshot(self) -> Snapshot:
        desired = self.read_desired()
        observed = await self.runtime.observe()
        names = set(desired.agents) | set(desired.invalid) | set(observed) | self.store.names()
        return Snapshot(desired, observed, names)

    async def reconcile(self, only: set[str] | None = None) -> None:
        """One pass over ``only`` (None: every agent either side or the status knows)."""
        if self.stopping:
            await self._finish_pass()
            return
        snap = await self.snapshot()
        batch: list[AgentStatus] = []
        events: list[Event] = []
        new_head = self._note_head(snap.desired, events)
        if new_head:
            # New desired state: every agent gets this pass, backoff or not.
            only = None
            for pending in self.retries.values():
                pending.at = 0.0
        now = self.clock.now()
        for name in sorted(snap.names if only is None else only & snap.names):
            d = snap.desired.agents.get(name)
            o = snap.observed.get(name)
            if name in self._inflight:
                self._dirty.add(name)  # picked up again when its worker finishes
                continue
            if self.store.is_suspended(name):
                # Flux semantics: nothing is done, but what is observed is still shown.
                row = self.status_row(name, d, o, snap)
                paused = Condition(
                    "Reconciled", "Unknown", "Suspended", f"resume with `hive-c0re resume {name}`"
                )
                conds = tuple(paused if c.type == "Reconciled" else c for c in row.conditions)
                batch.append(replace(row, conditions=conds))
                continue
            invalid = snap.desired.invalid.get(name)
            if invalid is not None:
                batch.append(self.status_row(name, None, o, snap, error=invalid.message))
                continue
            retry = self.retries.get(name)
            if retry is not None and retry.permanent_for is not None:
                if d is not None and retry.permanent_for == d.config_hash:
                    continue  # waits for new desired state
                retry.permanent_for = None
            if retry is not None and retry.at > now:
                continue
            actions = plan(d, o, auto_update=self.settings.auto_update, hyperhive_rev=self.rev)
            if name in self.rebuild_requested and d is not None and o is not None:
                self.rebuild_requested.discard(name)
                keep = (ActionKind.START, ActionKind.STOP)
                actions = [Action(ActionKind.REBUILD, name, d)] + [
                    a for a in actions if a.kind in keep
                ]
            if not actions:
                if d is None and o is None:
                    if self.broker is not None and name not in snap.desired.invalid:
                        # Idempotent: heals a Destroy whose mailbox close failed.
                        self._spawn(worker.close_mailbox(self, name), f"close-{name}")
                    self.store.forget(name)
                    self.retries.pop(name, None)
                    continue
                healthy = o is not None and o.phase == "running"
                if healthy and retry is not None and now >= retry.at + HEALTHY_AFTER:
                    self.retries.pop(name, None)  # healthy for a while: forget the backoff
                batch.append(self.status_row(name, d, o, snap))
                continue
            if o is not None and o.phase == "failed":
                events.append(Event(name, "exited", o.message or "the agent exited"))
                self.schedule_retry(name, "crashed")
            self._start_worker(name, actions, snap)
        if self._inflight:
            await asyncio.sleep(0)  # workers act first; a thousand status rows can wait
        fresh = [row.name for row in batch if self.store.get(row.name) is None]
        self.store.write(batch, events)
        for name in fresh:  # a status.json written before the agent had a row
            self.read_status_file(name)
        if new_head is not None:
            self._spawn(self._merge_proposed(), "merge-proposed")
        await self._finish_pass()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Future[None]:
        """A task owned by the loop's TaskGroup (or a bare one when driven by hand)."""
        if self._tg is not None:
            return self._tg.create_task(coro, name=name)
        task = asyncio.ensure_future(coro)
        self._loose.add(task)
        task.add_done_callback(self._loose.discard)
        return task

    def read_status_file(self, name: str) -> None:
        """Pick up a status.json the harness wrote before the agent had a row."""
        with contextlib.suppress(Exception):
            path = self.paths.agent_state_dir(name) / "status.json"
            statusfile.read_into(self.store, name, path)

    def _note_head(self, desired: DesiredState, events: list[Event]) -> bool | None:
        """Record a new applied HEAD: None if unchanged, False on the first pass, else True."""
        if desired.commit == self._last_head:
            return None
        first = self._last_head is None
        self._last_head = desired.commit
        self.store.set_repo_values(
            {"applied_head": desired.commit, "problems": "\n".join(desired.problems)}
        )
        if not first:
            events.append(Event("", "applied", f"applied HEAD is {desired.commit[:12]}"))
        return not first

    async def _merge_proposed(self) -> None:
        """Merge applied into proposed off the pass (it fetches; the pass must not wait)."""
        async with self._merge_lock:
            try:
                result = await asyncio.to_thread(
                    gitrepo.merge_into_proposed, self.paths.applied, self.paths.proposed
                )
            except Exception as e:  # a broken proposed repo must not stop reconciling
                log.warning("merging applied into proposed failed: %s", e)
                self.store.log(MANAGER_AGENT, "proposed_merge_failed", str(e))
                return
            if result.outcome in ("conflict", "postponed"):
                self.store.log(MANAGER_AGENT, f"proposed_{result.outcome}", result.message)

    async def _finish_pass(self) -> None:
        self.passes += 1
        async with self.pass_done:
            self.pass_done.notify_all()

    def _start_worker(self, name: str, actions: list[Action], snap: Snapshot) -> None:
        task = self._spawn(self._work(name, actions, snap), f"reconcile-{name}")
        self._inflight[name] = task
        task.add_done_callback(lambda _t: self._worker_done(name))

    async def _work(self, name: str, actions: list[Action], snap: Snapshot) -> None:
        async with self._limit:
            await worker.work(self, name, actions, snap)

    def _worker_done(self, name: str) -> None:
        self._inflight.pop(name, None)
        self._dirty.add(name)  # verify what the actions did with a fresh observation
        self._wake.set()

    async def reconcile_and_wait(self, name: str | None = None) -> None:
        """Admin ``reconcile``: a pass that includes ``name`` (None: all), and its workers."""
        self.enqueue(name, force=True)
        seen = self.passes
        while True:
            await self.wait_passes_after(seen)
            seen = self.passes
            if name is not None and name in self._inflight:
                await asyncio.gather(self._inflight[name], return_exceptions=True)
                continue
            if name is None and self._inflight:
                await self.wait_idle()
                continue
            pending = self._all_dirty or (name in self._dirty if name else bool(self._dirty))
            if not pending:
                return

    async def wait_passes_after(self, n: int) -> None:
        """Until more than ``n`` passes have finished (a counter, so no wake-up is lost)."""
        async with self.pass_done:
            await self.pass_done.wait_for(lambda: self.passes > n)

    async def wait_worker(self, name: str) -> None:
        """Until the agent's running worker (if any) is done: kill must not race a Start."""
        task = self._inflight.get(name)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until no worker runs (tests and the bench drive passes by hand)."""
        while self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    def schedule_retry(self, name: str, why: str) -> None:
        """A temporary error or a crash: the next try after backoff."""
        retry = self.retries.setdefault(name, Retry())
        retry.failures += 1
        retry.permanent_for = None
        retry.at = self.clock.now() + self.backoff(retry.failures)
        log.info(
            "%s: retry %d in %.1fs (%s)", name, retry.failures, retry.at - self.clock.now(), why
        )

    def backoff(self, failures: int) -> float:
        return backoff_delay(
            failures, self.settings.backoff_base, self.settings.backoff_cap, self.rng
        )

    def status_row(
        self,
        name: str,
        d: Desired | None,
        o: Observed | None,
        snap: Snapshot,
        *,
        error: str = "",
        temporary: bool = False,
        applied: list[str] | None = None,
    ) -> AgentStatus:
        """The agent's status row for this pass (or its worker's outcome)."""
        retry_note = ""
        retry = self.retries.get(name)
        if error and temporary and retry is not None:
            wait = max(0.0, retry.at - self.clock.now())
            retry_note = f" (retry {retry.failures} in {wait:.0f}s)"
        return agent_status(
            name,
            d,
            o,
            snap.desired,
            self.store.get(name),
            rev=self.rev,
            auto_update=self.settings.auto_update,
            outcome=Outcome(error, temporary, tuple(applied or ()), retry_note),
        )

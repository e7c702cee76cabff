"""An in-memory runtime: allowed only in the loop's unit tests and bench/reconcile.py.

It keeps the Runtime contract of ``reconciler/runtimes/base.py`` (CREATE
leaves the agent stopped, UPDATE/REBUILD keep the phase, every call is
idempotent) so the loop's behaviour can be tested without processes. Tests
script failures with :meth:`fail_next` and crashes with :meth:`crash`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

from hyperhive.reconciler.runtimes.base import (
    Action,
    ActionKind,
    Observed,
    RuntimeFailure,
)


class MemoryRuntime:
    name = "memory"

    def __init__(self, *, apply_delay: float = 0.0) -> None:
        self.agents: dict[str, Observed] = {}
        self.calls: Counter[tuple[str, str]] = Counter()
        self.log: list[str] = []
        self.apply_delay = apply_delay
        self._failures: dict[str, list[RuntimeFailure]] = {}
        self._events: asyncio.Queue[str] = asyncio.Queue()
        self.applied = asyncio.Event()

    def fail_next(self, name: str, error: RuntimeFailure, times: int = 1) -> None:
        self._failures.setdefault(name, []).extend([error] * times)

    def crash(self, name: str, message: str = "exit status 1") -> None:
        o = self.agents[name]
        self.agents[name] = Observed(
            name, "failed", o.config_hash, o.hyperhive_rev, None, message, o.details
        )
        self._events.put_nowait(name)

    async def observe(self) -> dict[str, Observed]:
        return dict(self.agents)

    async def apply(self, action: Action) -> None:
        self.calls[(action.kind.value, action.name)] += 1
        self.log.append(str(action))
        if self.apply_delay:
            await asyncio.sleep(self.apply_delay)
        pending = self._failures.get(action.name)
        if pending:
            raise pending.pop(0)
        name = action.name
        o = self.agents.get(name)
        d = action.desired
        if action.kind is ActionKind.CREATE:
            assert d is not None
            if o is None:
                self.agents[name] = Observed(name, "stopped", d.config_hash, d.hyperhive_rev)
        elif action.kind in (ActionKind.UPDATE, ActionKind.REBUILD):
            assert d is not None and o is not None
            self.agents[name] = Observed(name, o.phase, d.config_hash, d.hyperhive_rev)
        elif action.kind is ActionKind.START:
            assert o is not None
            self.agents[name] = Observed(name, "running", o.config_hash, o.hyperhive_rev, 4242)
        elif action.kind is ActionKind.STOP:
            if o is not None:
                self.agents[name] = Observed(name, "stopped", o.config_hash, o.hyperhive_rev)
        elif action.kind is ActionKind.DESTROY:
            self.agents.pop(name, None)
        self.applied.set()

    async def events(self) -> AsyncIterator[str]:
        while True:
            yield await self._events.get()

    async def close(self) -> None:
        return None

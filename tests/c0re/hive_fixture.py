"""A c0re home in tmp_path: applied/proposed repos, a status store, a loop on a runtime."""

from __future__ import annotations

import random
from pathlib import Path

from hyperhive.clock import FakeClock
from hyperhive.paths import Paths
from hyperhive.reconciler import gitrepo
from hyperhive.reconciler.loop import LoopSettings, Reconciler
from hyperhive.reconciler.runtimes.base import Runtime
from hyperhive.reconciler.status import StatusStore

REV = "rev-test"


def make_home(tmp_path: Path, *, manager: bool = True) -> Paths:
    paths = Paths.from_home(tmp_path / "hive")
    gitrepo.ensure_repos(paths.applied, paths.proposed, manager=manager)
    return paths


def make_reconciler(
    paths: Paths,
    runtime: Runtime,
    *,
    clock: FakeClock | None = None,
    manager: bool = True,
    auto_update: bool = True,
    concurrency: int = 8,
) -> Reconciler:
    return Reconciler(
        paths=paths,
        runtime=runtime,
        store=StatusStore(paths.c0re_db),
        hyperhive_rev=REV,
        settings=LoopSettings(manager=manager, auto_update=auto_update, concurrency=concurrency),
        clock=clock or FakeClock(),
        rng=random.Random(7),
        port_in_use=lambda p: False,
    )

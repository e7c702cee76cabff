"""What wakes the reconcile loop: each trigger only marks agents dirty.

Level-triggered, so a trigger carries no instruction: a new applied HEAD,
an agent that exited, the periodic resync and an expired backoff all end in
``Reconciler.enqueue``, and the next pass decides from fresh reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from watchfiles import awatch

from hyperhive.reconciler import gitrepo

if TYPE_CHECKING:
    from hyperhive.reconciler.loop import Reconciler


async def watch_applied(rec: Reconciler) -> None:
    """A new applied HEAD (an operator's commit, an approval) → every agent."""
    git_dir = Path(rec.repo.path)

    def is_ref(_change: object, path: str) -> bool:
        rel = path[len(str(git_dir)) :].lstrip("/")
        return not rel.endswith(".lock") and (
            rel.startswith("refs/") or rel in ("HEAD", "packed-refs")
        )

    # yield_on_timeout: an empty batch every 500 ms says the watcher runs, and
    # doubles as a cheap HEAD check should an inotify event ever be missed.
    async for _changes in awatch(
        git_dir,
        watch_filter=is_ref,
        debounce=rec.settings.watch_debounce_ms,
        step=rec.settings.watch_step_ms,
        rust_timeout=500,
        yield_on_timeout=True,
    ):
        rec.watching.set()
        if gitrepo.head_commit(rec.repo) != rec.last_head:
            rec.enqueue(force=True)


async def watch_runtime(rec: Reconciler) -> None:
    """An agent whose state changed on its own (it exited) → that agent."""
    async for name in rec.runtime.events():
        rec.enqueue(name)


async def resync(rec: Reconciler) -> None:
    """Every agent, periodically: level-triggered means drift is found."""
    while True:
        await asyncio.sleep(rec.settings.resync_seconds)
        rec.enqueue()


async def retry_timer(rec: Reconciler) -> None:
    """Wake the dispatcher when the earliest backoff expires."""
    while True:
        due = [r.at for r in rec.retries.values() if r.at > 0 and r.permanent_for is None]
        delay = min(due) - rec.clock.now() if due else rec.settings.resync_seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.05, min(delay, 5.0))):
                await rec.wait_pass()
        now = rec.clock.now()
        for name, r in rec.retries.items():
            if 0 < r.at <= now and r.permanent_for is None:
                rec.enqueue(name)

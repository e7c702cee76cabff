"""One agent's worker: do the actions a pass planned, then write that agent's status.

A pass hands each agent with actions to its own worker (the loop keeps one
per agent and the global concurrency limit). The worker opens the broker
mailbox an agent needs before it starts and closes it after a Destroy, and
sorts the outcome by the error's type: a temporary error schedules a retry
with backoff, a permanent one waits for new desired state (a different
``config_hash``). Either way the agent's status row and its events are
written once, when the worker is done.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hyperhive.reconciler.backoff import Retry
from hyperhive.reconciler.runtimes.base import Action, ActionKind, PermanentError, TemporaryError
from hyperhive.reconciler.status import Event

if TYPE_CHECKING:
    from hyperhive.reconciler.loop import Reconciler, Snapshot

log = logging.getLogger(__name__)


async def work(rec: Reconciler, name: str, actions: list[Action], snap: Snapshot) -> None:
    """Apply ``actions`` in order, stopping at the first error, and record what happened."""
    done: list[str] = []
    error = ""
    temporary = False
    try:
        for action in actions:
            await apply(rec, action)
            done.append(str(action.kind))
    except TemporaryError as e:
        error, temporary = e.message, True
    except PermanentError as e:
        error = e.message
    except Exception as e:
        log.exception("runtime failed on %s", name)
        error, temporary = f"unexpected runtime failure: {e}", True
    rec.applied_actions += len(done)
    d = snap.desired.agents.get(name)
    events = [Event(name, kind) for kind in done]
    if error:
        events.append(Event(name, "temporary_error" if temporary else "error", error))
        if temporary:
            rec.schedule_retry(name, error)
        else:
            rec.retries.setdefault(name, Retry()).permanent_for = (
                d.config_hash if d is not None else ""
            )
    row = rec.status_row(
        name,
        d,
        snap.observed.get(name),
        snap,
        error=error,
        temporary=temporary,
        applied=done,
    )
    if d is None and not error:
        rec.store.write([], events)
    else:
        fresh = rec.store.get(name) is None
        rec.store.write([row], events)
        if fresh:
            rec.read_status_file(name)


async def apply(rec: Reconciler, action: Action) -> None:
    """One action, with the broker mailbox opened before and closed after as needed."""
    if rec.broker is not None and action.kind in (
        ActionKind.CREATE,
        ActionKind.REBUILD,
        ActionKind.START,
    ):
        await rec.broker.open_mailbox(action.name)
    await rec.runtime.apply(action)
    if rec.broker is not None and action.kind is ActionKind.DESTROY:
        await rec.broker.close_mailbox(action.name)


async def close_mailbox(rec: Reconciler, name: str) -> None:
    """Close a forgotten agent's mailbox: heals a Destroy whose close failed."""
    if rec.broker is None:
        return
    try:
        await rec.broker.close_mailbox(name)
    except Exception as e:  # best effort; the next forget of this name tries again
        log.warning("closing %s's mailbox failed: %s", name, e)

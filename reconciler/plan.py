"""The decision: ``plan(desired, observed) -> list[Action]``, a pure function.

All I/O sits around it (loop.py reads desired and observed state, then
carries the actions out through a runtime). ``diff`` shows the same plan
without applying it. Each row of the table below has its test in
tests/c0re/test_plan.py, the no-op row first.

| desired            | observed                 | actions                     |
|--------------------|--------------------------|-----------------------------|
| = observed         | matching                 | (none)                      |
| absent             | absent                   | (none)                      |
| present            | absent                   | Create (+ Start if running) |
| absent             | present                  | Destroy                     |
| rev differs        | auto_update on           | Rebuild (+ Start/Stop)      |
| rev differs        | auto_update off          | (none; UpToDate=False)      |
| hash differs       | present                  | Update (+ Start/Stop)       |
| state running      | stopped / failed         | Start                       |
| state stopped      | running / pending/failed | Stop (a failed one: cleanup)|

Update and Rebuild keep the phase the agent had; the Start/Stop that
follows converges it to ``spec.state``.
"""

from __future__ import annotations

from collections.abc import Mapping

from hyperhive.reconciler.runtimes.base import Action, ActionKind, Desired, Observed


def plan(
    desired: Desired | None,
    observed: Observed | None,
    *,
    auto_update: bool = True,
    hyperhive_rev: str,
) -> list[Action]:
    """The actions that bring one agent from ``observed`` to ``desired``."""
    if desired is None:
        return [] if observed is None else [Action(ActionKind.DESTROY, observed.name)]
    name = desired.name
    if observed is None:
        actions = [Action(ActionKind.CREATE, name, desired)]
        if desired.wants_running:
            actions.append(Action(ActionKind.START, name, desired))
        return actions
    actions = []
    if auto_update and is_stale(observed, hyperhive_rev):
        actions.append(Action(ActionKind.REBUILD, name, desired))
    elif observed.config_hash != desired.config_hash:
        actions.append(Action(ActionKind.UPDATE, name, desired))
    if desired.wants_running and observed.phase in ("stopped", "failed"):
        actions.append(Action(ActionKind.START, name, desired))
    elif not desired.wants_running and observed.phase in ("running", "pending", "failed"):
        actions.append(Action(ActionKind.STOP, name, desired))
    return actions


def is_stale(observed: Observed, hyperhive_rev: str) -> bool:
    """The agent was built from another hyperhive rev than the one c0re runs."""
    return observed.hyperhive_rev != hyperhive_rev


def plan_all(
    desired: Mapping[str, Desired],
    observed: Mapping[str, Observed],
    *,
    auto_update: bool = True,
    hyperhive_rev: str,
) -> dict[str, list[Action]]:
    """The plan of every agent either side knows, only those with actions."""
    out: dict[str, list[Action]] = {}
    for name in sorted(set(desired) | set(observed)):
        actions = plan(
            desired.get(name),
            observed.get(name),
            auto_update=auto_update,
            hyperhive_rev=hyperhive_rev,
        )
        if actions:
            out[name] = actions
    return out

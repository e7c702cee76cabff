"""One agent's status row from what a pass saw and did: a pure function.

The loop calls :func:`agent_status` once per agent per pass; the row goes to
``c0re.sqlite`` in that pass's single write. Reasons and their meaning are
listed in docs/operator-guide.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from hyperhive.reconciler.desired import DesiredState
from hyperhive.reconciler.plan import is_stale
from hyperhive.reconciler.runtimes.base import Desired, Observed
from hyperhive.reconciler.status import AgentStatus, Condition


@dataclass(frozen=True)
class Outcome:
    """What the pass did to the agent: the actions applied and the error, if any."""

    error: str = ""
    temporary: bool = False
    applied: tuple[str, ...] = ()
    retry_note: str = ""


def agent_status(
    name: str,
    d: Desired | None,
    o: Observed | None,
    desired: DesiredState,
    previous: AgentStatus | None,
    *,
    rev: str,
    auto_update: bool,
    outcome: Outcome,
) -> AgentStatus:
    """Phase, conditions, port and applied commit of one agent after a pass."""
    invalid = desired.invalid.get(name)
    error, applied = outcome.error, outcome.applied
    conds: list[Condition] = []
    phase = o.phase if o is not None else ("failed" if invalid else "pending")
    if applied and not error:
        # The actions ran; the pass they trigger observes the resulting phase.
        phase = "pending" if d is not None and d.wants_running else phase
    if o is not None and o.phase == "running" and not applied:
        conds.append(Condition("Ready", "True", "Running", ""))
    else:
        conds.append(Condition("Ready", "False", phase.capitalize(), o.message if o else ""))
    if invalid is not None:
        conds.append(Condition("Reconciled", "False", "InvalidSpec", invalid.message))
    elif error:
        reason = "TemporaryError" if outcome.temporary else "PermanentError"
        conds.append(Condition("Reconciled", "False", reason, error + outcome.retry_note))
    elif applied:
        conds.append(Condition("Reconciled", "True", "Applied", ", ".join(applied)))
    else:
        conds.append(Condition("Reconciled", "True", "Converged", ""))
    if o is None or o.hyperhive_rev is None:
        conds.append(Condition("UpToDate", "Unknown", "NotBuilt", ""))
    elif is_stale(o, rev) and "rebuild" not in applied:
        note = "" if auto_update else "; auto_update is off"
        msg = f"built from {o.hyperhive_rev}, c0re runs {rev}{note}"
        conds.append(Condition("UpToDate", "False", "StaleRevision", msg))
    else:
        conds.append(Condition("UpToDate", "True", "CurrentRevision", rev))
    conds.extend(runtime_conditions(o, wants_resources=d is not None and "resources" in d.spec))
    port = d.web_port if d is not None else previous.web_port if previous else None
    # The commit whose desired state this agent runs: it moves when actions apply it
    # (a commit that leaves the agent's folder alone changes nothing for it).
    commit = desired.commit
    if not applied and previous is not None and previous.applied_commit:
        commit = previous.applied_commit
    return AgentStatus(
        name=name,
        applied_commit=commit,
        phase=phase,
        conditions=tuple(conds),
        last_error=error or (invalid.message if invalid else ""),
        web_port=port,
    )


def runtime_conditions(o: Observed | None, *, wants_resources: bool = True) -> list[Condition]:
    """What the runtime reports about isolation (``Observed.details``) as conditions.

    ``ResourcesEnforced`` only appears for an agent whose spec sets ``resources``.
    """
    if o is None:
        return []
    out = []
    enforced = o.details.get("ResourcesEnforced")
    if isinstance(enforced, bool) and wants_resources:
        reason = str(o.details.get("ResourcesReason", ""))
        out.append(
            Condition("ResourcesEnforced", "True", "Enforced", "")
            if enforced
            else Condition("ResourcesEnforced", "False", "NotEnforced", reason)
        )
    sandbox = o.details.get("Sandbox")
    if isinstance(sandbox, str):
        if sandbox == "none":
            msg = "running WITHOUT a sandbox (--unsafe-no-sandbox; bwrap is missing)"
            out.append(Condition("Sandboxed", "False", "UnsafeNoSandbox", msg))
        else:
            out.append(Condition("Sandboxed", "True", sandbox, ""))
    return out

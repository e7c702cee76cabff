"""The operator's admin socket ``RUN/host.sock``: JSON lines, one command per line (DESIGN §7).

Commands live in a registry (name → async handler) that other modules
extend (approvals adds ``pending``, ``approve``, ``deny``). Each handler
validates its fields at the edge into typed values and raises
:class:`~hyperhive.errors.HiveError` subclasses; ``hyperhive.jsonlines``
turns those into ``{"ok": false, "error": {code, message}}`` lines.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hyperhive.errors import BadRequest, HiveError, NotFound
from hyperhive.names import MANAGER_AGENT, validate_agent_name, validate_mailbox_name
from hyperhive.paths import Paths
from hyperhive.reconciler import gitrepo
from hyperhive.reconciler.broker_client import BrokerClient
from hyperhive.reconciler.loop import Reconciler
from hyperhive.reconciler.plan import plan_all
from hyperhive.reconciler.runtimes.base import Action, ActionKind, Runtime
from hyperhive.reconciler.status import StatusStore

MAX_BODY = 64 * 1024
RECONCILE_TIMEOUT = 60.0

AdminHandler = Callable[["Admin", dict[str, Any]], Awaitable[dict[str, Any]]]
#: The built-in commands; ``Admin.commands`` starts as a copy other modules add to.
COMMANDS: dict[str, AdminHandler] = {}


def command(name: str) -> Callable[[AdminHandler], AdminHandler]:
    def register(fn: AdminHandler) -> AdminHandler:
        COMMANDS[name] = fn
        return fn

    return register


@dataclass
class Admin:
    paths: Paths
    store: StatusStore
    reconciler: Reconciler
    runtime: Runtime
    broker: BrokerClient | None
    hyperhive_rev: str
    #: Called by ``shutdown`` once the answer is on its way.
    request_exit: Callable[[], None] = lambda: None
    commands: dict[str, AdminHandler] = field(default_factory=lambda: dict(COMMANDS))

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        handler = self.commands.get(req["cmd"])
        if handler is None:
            known = ", ".join(sorted(self.commands))
            raise BadRequest(f"unknown command {req['cmd']!r}; known: {known}")
        return await handler(self, req)


# --- argument parsing at the edge ------------------------------------------------
def name_arg(req: dict[str, Any], *, required: bool = True) -> str | None:
    value = req.get("name")
    if value is None:
        if required:
            raise BadRequest("this command needs a field 'name'")
        return None
    return validate_agent_name(value)


def required_name(req: dict[str, Any]) -> str:
    if req.get("name") is None:
        raise BadRequest("this command needs a field 'name'")
    return validate_agent_name(req["name"])


def str_arg(req: dict[str, Any], key: str, *, max_len: int = 200) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"field {key!r} must be a non-empty string")
    if len(value.encode()) > max_len:
        raise BadRequest(f"field {key!r} is longer than {max_len} bytes")
    return value


def bool_arg(req: dict[str, Any], key: str) -> bool:
    value = req.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"field {key!r} must be true or false")
    return value


def int_arg(req: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = req.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"field {key!r} must be an integer in {low}..{high}")
    return value


# --- commands ---------------------------------------------------------------------
@command("status")
async def status(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    name = name_arg(req, required=False)
    rows = admin.store.all()
    if name is not None:
        rows = [r for r in rows if r.name == name]
        if not rows:
            raise NotFound(f"no agent {name!r}")
    problems = admin.store.repo_value("problems") or ""
    return {
        "agents": [r.to_json() for r in rows],
        "applied_head": admin.store.repo_value("applied_head") or "",
        "problems": [p for p in problems.split("\n") if p],
        "hyperhive_rev": admin.hyperhive_rev,
        "runtime": getattr(admin.runtime, "name", "?"),
    }


@command("diff")
async def diff(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    name = name_arg(req, required=False)
    snap = await admin.reconciler.snapshot()
    plans = plan_all(
        snap.desired.agents,
        snap.observed,
        auto_update=admin.reconciler.settings.auto_update,
        hyperhive_rev=admin.hyperhive_rev,
    )
    changes = [
        {
            "name": n,
            "actions": [a.kind.value for a in acts],
            "suspended": admin.store.is_suspended(n),
        }
        for n, acts in plans.items()
        if name is None or n == name
    ]
    invalid = [
        {"name": n, "message": bad.message}
        for n, bad in sorted(snap.desired.invalid.items())
        if name is None or n == name
    ]
    return {"commit": snap.desired.commit, "changes": changes, "invalid": invalid}


@command("reconcile")
async def reconcile(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    name = name_arg(req, required=False)
    try:
        async with asyncio.timeout(RECONCILE_TIMEOUT):
            await admin.reconciler.reconcile_and_wait(name)
    except TimeoutError as e:
        raise HiveError("the reconcile pass is still running", code="timeout") from e
    return await status(admin, {"name": name} if name and admin.store.get(name) else {})


@command("suspend")
async def suspend(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    name = required_name(req)
    admin.store.set_suspended(name, True)
    return {"name": name, "suspended": True}


@command("resume")
async def resume(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    name = required_name(req)
    admin.store.set_suspended(name, False)
    admin.reconciler.enqueue(name, force=True)
    return {"name": name, "suspended": False}


@command("history")
async def history(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    name = required_name(req)
    limit = int_arg(req, "limit", 50, 1, 1000)
    entries = await asyncio.to_thread(gitrepo.history, admin.paths.applied, name, limit=limit)
    return {
        "name": name,
        "commits": [
            {
                "commit": e.commit,
                "summary": e.summary,
                "author": e.author,
                "time": e.time,
                "trailers": e.trailers,
            }
            for e in entries
        ],
    }


@command("rollback")
async def rollback(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    name = required_name(req)
    rev = str_arg(req, "rev", max_len=100)
    if rev.startswith("-"):
        raise BadRequest("field 'rev' must name a commit")
    sha = await asyncio.to_thread(gitrepo.rollback, admin.paths.applied, name, rev)
    admin.reconciler.enqueue(name, force=True)
    return {"name": name, "commit": sha}


@command("events")
async def events(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    after = int_arg(req, "after", 0, 0, 2**63 - 1)
    limit = int_arg(req, "limit", 100, 1, 1000)
    agent = name_arg({"name": req["agent"]}) if req.get("agent") is not None else None
    return {"events": admin.store.events(after=after, limit=limit, agent=agent)}


@command("send")
async def send(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    to = str_arg(req, "to", max_len=40)
    validate_mailbox_name(to)
    body = str_arg(req, "body", max_len=MAX_BODY)
    if admin.broker is None:
        raise HiveError("no broker is configured", code="unavailable")
    mid = await admin.broker.send_as_operator(to, body)
    return {"id": mid}


@command("kill")
async def kill(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    """Stop at once and suspend, so no pass restarts it until ``resume``."""
    name = required_name(req)
    observed = await admin.runtime.observe()
    if name not in observed and admin.store.get(name) is None:
        raise NotFound(f"no agent {name!r}")
    admin.store.set_suspended(name, True)
    await admin.reconciler.wait_worker(name)  # a Start in flight would undo the stop
    if name in await admin.runtime.observe():
        await admin.runtime.apply(Action(ActionKind.STOP, name))
    admin.store.log(name, "killed", "stopped by the operator and suspended")
    return {"name": name, "suspended": True}


@command("destroy")
async def destroy(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    """Commit the folder's removal, then Destroy; ``purge`` also drops state, creds and mail."""
    name = required_name(req)
    purge = bool_arg(req, "purge")
    if name == MANAGER_AGENT and admin.reconciler.settings.manager:
        raise BadRequest(f"{MANAGER_AGENT} is kept while [c0re] manager = true")
    try:
        sha = await asyncio.to_thread(gitrepo.destroy, admin.paths.applied, name)
    except NotFound:
        if admin.store.get(name) is None:
            raise
        sha = admin.store.repo_value("applied_head") or ""
    admin.store.set_suspended(name, False)
    try:
        async with asyncio.timeout(RECONCILE_TIMEOUT):
            await admin.reconciler.reconcile_and_wait(name)
    except TimeoutError as e:
        raise HiveError("destroy committed; the runtime is still busy", code="timeout") from e
    if name in await admin.runtime.observe():
        raise HiveError(f"{name} is still present; see `hive-c0re status {name}`", code="busy")
    if purge:
        if admin.broker is not None:
            await admin.broker.close_mailbox(name, purge=True)
        await asyncio.to_thread(shutil.rmtree, admin.paths.agent_root(name), ignore_errors=True)
        admin.store.log(name, "purged", "state, credentials and mail deleted")
    return {"name": name, "commit": sha, "purged": purge}


@command("rebuild")
async def rebuild(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    name = required_name(req)
    observed = await admin.runtime.observe()
    if name not in observed:
        raise NotFound(f"{name} is not running in the runtime; nothing to rebuild")
    admin.reconciler.rebuild_requested.add(name)
    try:
        async with asyncio.timeout(RECONCILE_TIMEOUT):
            await admin.reconciler.reconcile_and_wait(name)
    except TimeoutError as e:
        raise HiveError("the rebuild is still running", code="timeout") from e
    return await status(admin, {"name": name})


@command("shutdown")
async def shutdown(admin: Admin, req: dict[str, Any]) -> dict[str, Any]:
    """Stop c0re; with ``agents: true`` (``up`` on Ctrl-C) stop every agent first."""
    agents = bool_arg(req, "agents")
    admin.reconciler.stopping = True
    stopped: list[str] = []
    if agents:
        await admin.reconciler.wait_idle()
        observed = await admin.runtime.observe()
        running = [n for n, o in observed.items() if o.phase in ("running", "pending")]
        results = await asyncio.gather(
            *(admin.runtime.apply(Action(ActionKind.STOP, n)) for n in running),
            return_exceptions=True,
        )
        stopped = [n for n, r in zip(running, results, strict=True) if r is None]
    asyncio.get_running_loop().call_later(0.05, admin.request_exit)
    return {"stopped": stopped}

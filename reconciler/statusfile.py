"""The harness's ``status.json`` → the LoggedIn condition and status fields (DESIGN §10).

Each agent's harness atomically rewrites ``STATE/agents/<n>/state/status.json``.
c0re watches those files and treats them as untrusted input: a size cap, a
strict schema, and the agent name taken from the path (validated), never
from the file. A bad file becomes ``LoggedIn=Unknown`` with the reason.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from watchfiles import awatch

from hyperhive.names import is_agent_name
from hyperhive.reconciler.status import Condition, StatusStore

log = logging.getLogger(__name__)

MAX_STATUS_BYTES = 16 * 1024
FIELDS: dict[str, tuple[type, ...]] = {
    "logged_in": (bool,),
    "busy": (bool,),
    "turns": (int,),
    "last_turn_at": (str, type(None)),
    "cost_usd": (float, int),
    "input_tokens": (int,),
    "output_tokens": (int,),
}


class BadStatusFile(ValueError):
    pass


def parse_status(raw: bytes) -> dict[str, Any]:
    """Validate one status.json; unknown keys are dropped, wrong types refused."""
    if len(raw) > MAX_STATUS_BYTES:
        raise BadStatusFile(f"status.json is larger than {MAX_STATUS_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadStatusFile(f"status.json is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise BadStatusFile("status.json must be an object")
    out: dict[str, Any] = {}
    for key, kinds in FIELDS.items():
        if key not in data:
            raise BadStatusFile(f"status.json lacks {key!r}")
        value = data[key]
        if isinstance(value, bool) and bool not in kinds:
            raise BadStatusFile(f"status.json field {key!r} has the wrong type")
        if not isinstance(value, kinds):
            raise BadStatusFile(f"status.json field {key!r} has the wrong type")
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise BadStatusFile(f"status.json field {key!r} is negative")
        if isinstance(value, str) and len(value) > 64:
            raise BadStatusFile(f"status.json field {key!r} is too long")
        out[key] = value
    out["cost_usd"] = float(out["cost_usd"])
    return out


def agent_of(path: Path, agents_dir: Path) -> str | None:
    """``STATE/agents/<n>/state/status.json`` → ``<n>`` (None for anything else)."""
    try:
        rel = path.relative_to(agents_dir)
    except ValueError:
        return None
    parts = rel.parts
    if len(parts) != 3 or parts[1:] != ("state", "status.json") or not is_agent_name(parts[0]):
        return None
    return parts[0]


def read_into(store: StatusStore, name: str, path: Path) -> None:
    """Read one agent's status.json (if present) into its status row."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_STATUS_BYTES + 1)
    except FileNotFoundError:
        return
    except OSError as e:
        cond = Condition("LoggedIn", "Unknown", "StatusUnreadable", str(e))
        store.set_report(name, {}, cond)
        return
    try:
        report = parse_status(raw)
    except BadStatusFile as e:
        store.set_report(name, {}, Condition("LoggedIn", "Unknown", "BadStatusFile", str(e)))
        return
    if report["logged_in"]:
        cond = Condition("LoggedIn", "True", "LoggedIn", "the harness has credentials")
    else:
        cond = Condition("LoggedIn", "False", "NotLoggedIn", "log in through the agent's web UI")
    store.set_report(name, report, cond)


async def watch(store: StatusStore, agents_dir: Path) -> None:
    """Follow every agent's status.json until cancelled."""
    agents_dir.mkdir(parents=True, exist_ok=True)
    for name in store.names():
        if is_agent_name(name):
            read_into(store, name, agents_dir / name / "state" / "status.json")

    def wanted(_change: object, path: str) -> bool:
        return path.endswith("/state/status.json")

    async for changes in awatch(
        agents_dir, watch_filter=wanted, debounce=50, step=20, recursive=True
    ):
        for _change, raw_path in changes:
            path = Path(raw_path)
            agent = agent_of(path, agents_dir)
            if agent is not None:
                read_into(store, agent, path)

"""What ``hive-c0re`` prints: the daemon's answers as human tables, and the exit codes.

The client subcommands send one request and hand the answer here unless
``--json`` asks for the raw JSON. Exit codes are part of the CLI's
contract: 0 ok, 1 ``diff`` found changes, 2 usage, 3 daemon unreachable,
4 the daemon refused. Kept apart from argument parsing so the whole of
what an operator reads sits in one place (the approvals verbs reuse
:func:`table`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

EXIT_OK, EXIT_CHANGES, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3, 4


def render_code(name: str, resp: dict[str, Any]) -> int:
    """The exit code of a ``--json`` answer: only ``diff`` with changes is non-zero."""
    return EXIT_CHANGES if name == "diff" and resp.get("changes") else EXIT_OK


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Columns as wide as their widest cell, no trailing blanks: reads in a terminal, greps."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def _cond(agent: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in agent.get("conditions", []):
        if c.get("type") == type_:
            return dict(c)
    return {}


def _mark(c: dict[str, Any]) -> str:
    status = c.get("status")
    return {"True": "yes", "False": "no"}.get(str(status), "-") if c else "-"


def render_status(resp: dict[str, Any]) -> int:
    rows = []
    notes = []
    for a in resp.get("agents", []):
        rows.append(
            [
                a["name"] + (" (suspended)" if a.get("suspended") else ""),
                a.get("phase", "?"),
                _mark(_cond(a, "Ready")),
                _mark(_cond(a, "Reconciled")),
                _mark(_cond(a, "UpToDate")),
                _mark(_cond(a, "LoggedIn")),
                str(a.get("web_port") or "-"),
                str(a.get("turns", "-")),
                (a.get("applied_commit") or "")[:10],
            ]
        )
        for c in a.get("conditions", []):
            if c.get("status") == "False" and c.get("type") != "Ready":
                notes.append(f"  {a['name']}: {c['type']} {c['reason']}: {c.get('message', '')}")
    header = [
        "NAME",
        "PHASE",
        "READY",
        "RECONCILED",
        "UPTODATE",
        "LOGGEDIN",
        "PORT",
        "TURNS",
        "COMMIT",
    ]
    print(table(rows, header) if rows else "no agents")
    for p in resp.get("problems", []):
        notes.append(f"  applied repo: {p}")
    if notes:
        print("\n".join(["", "problems:", *notes]))
    return EXIT_OK


def render_diff(resp: dict[str, Any]) -> int:
    changes = resp.get("changes", [])
    for ch in changes:
        sus = " (suspended: not applied until resume)" if ch.get("suspended") else ""
        print(f"{ch['name']}: {', '.join(ch['actions'])}{sus}")
    for bad in resp.get("invalid", []):
        print(f"{bad['name']}: invalid: {bad['message']}")
    if not changes and not resp.get("invalid"):
        print(f"no changes (applied {str(resp.get('commit', ''))[:12]})")
    return EXIT_CHANGES if changes else EXIT_OK


def render_history(resp: dict[str, Any]) -> int:
    rows = [
        [
            c["commit"][:12],
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(c["time"])),
            c["author"],
            c["summary"],
        ]
        for c in resp.get("commits", [])
    ]
    print(table(rows, ["COMMIT", "DATE (UTC)", "AUTHOR", "SUMMARY"]) if rows else "no history")
    return EXIT_OK


def render_events(resp: dict[str, Any]) -> int:
    for e in resp.get("events", []):
        who = e["agent"] or "-"
        print(f"{e['id']:>6}  {e['at']}  {who:<9}  {e['kind']}  {e['message']}".rstrip())
    return EXIT_OK


def render_fields(*keys: str) -> Callable[[dict[str, Any]], int]:
    def render(resp: dict[str, Any]) -> int:
        print("  ".join(f"{k}={resp[k]}" for k in keys if k in resp) or "ok")
        return EXIT_OK

    return render

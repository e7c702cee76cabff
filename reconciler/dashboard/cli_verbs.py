"""``hive-c0re pending [--diff]``, ``approve ID``, ``deny ID [NOTE]``: the gate from a terminal.

Registered into the core CLI's subcommand table; each is one request on
``host.sock`` answered by the same handlers the dashboard calls. Deliberately
light (no git, no web imports): the CLI starts on every call.
"""

from __future__ import annotations

import argparse
from typing import Any

from hyperhive.reconciler import cli, cli_output


def _pending_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--diff", action="store_true", help="show each approval's diff against applied")
    p.add_argument("--all", action="store_true", help="include recently decided approvals")


def _pending_build(ns: argparse.Namespace) -> dict[str, Any]:
    return {"cmd": "pending", "diff": ns.diff, "all": ns.all}


def render_pending(resp: dict[str, Any]) -> int:
    approvals = resp.get("approvals", [])
    if not approvals:
        print("nothing pending")
        return cli_output.EXIT_OK
    rows = [
        [str(a["id"]), a["kind"], a["agent"], (a.get("sha") or "")[:12], a["status"],
         a["requested_at"], a.get("note") or ""]
        for a in approvals
    ]  # fmt: skip
    print(cli_output.table(rows, ["ID", "KIND", "AGENT", "SHA", "STATUS", "REQUESTED", "NOTE"]))
    for a in approvals:
        if a.get("diff"):
            print(f"\n--- approval {a['id']} ({a['kind']} {a['agent']}) ---")
            if a.get("message"):
                print("".join(f"# {line}\n" for line in a["message"].splitlines()), end="")
            print(a["diff"], end="")
    return cli_output.EXIT_OK


def _id(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=int, help="approval id (see `hive-c0re pending`)")


def _deny_configure(p: argparse.ArgumentParser) -> None:
    _id(p)
    p.add_argument("note", nargs="?", default="", help="why, for hm1nd (optional)")


def render_decision(resp: dict[str, Any]) -> int:
    a = resp.get("approval", {})
    line = f"approval {a.get('id')}: {a.get('status')}"
    if a.get("applied_commit"):
        line += f" as {a['applied_commit'][:12]}"
    if a.get("note"):
        line += f" ({a['note']})"
    print(line)
    return cli_output.EXIT_OK if a.get("status") != "failed" else cli_output.EXIT_REFUSED


def register() -> None:
    cli.client_command("pending", "approvals waiting for the operator", _pending_configure,
                       _pending_build, render_pending)  # fmt: skip
    cli.client_command("approve", "approve a pending approval (applies it)", _id,
                       lambda ns: {"cmd": "approve", "id": ns.id}, render_decision)  # fmt: skip
    cli.client_command("deny", "deny a pending approval, with a note for hm1nd", _deny_configure,
                       lambda ns: {"cmd": "deny", "id": ns.id, "note": ns.note},
                       render_decision)  # fmt: skip

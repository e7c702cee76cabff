"""``hive-c0re``: the daemon (``serve``), a local hive (``up``) and the admin client.

Every client subcommand is one request on ``host.sock`` (found per DESIGN
§6 by :func:`hyperhive.paths.resolve_paths`). Output is a human table by
default (:mod:`~hyperhive.reconciler.cli_output`) and the daemon's JSON
with ``--json``. Exit codes: 0 ok, 1 ``diff`` found changes, 2 usage, 3
daemon unreachable, 4 the daemon refused.
Subcommands live in :data:`CLI_COMMANDS`, which other modules extend
(approvals adds ``pending``, ``approve``, ``deny``) with :func:`client_command`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperhive.errors import HiveError
from hyperhive.jsonlines import Unreachable, request_sync
from hyperhive.paths import Paths, resolve_paths
from hyperhive.reconciler.cli_output import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    render_code,
    render_diff,
    render_events,
    render_fields,
    render_history,
    render_status,
)

REQUEST_TIMEOUT = 120.0

Request = dict[str, Any]


@dataclass(frozen=True)
class CliCommand:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


CLI_COMMANDS: dict[str, CliCommand] = {}


def paths_of(ns: argparse.Namespace) -> Paths:
    return resolve_paths(ns.home, ns.run_dir, getattr(ns, "state_dir", None))


def call(ns: argparse.Namespace, req: Request) -> dict[str, Any]:
    """One admin request; unreachable/refused become exits 3/4 with one clear line."""
    sock = paths_of(ns).host_sock
    try:
        resp = request_sync(sock, req, timeout=REQUEST_TIMEOUT)
    except Unreachable as e:
        print(f"hive-c0re: daemon unreachable: {e.message}", file=sys.stderr)
        raise SystemExit(EXIT_UNREACHABLE) from e
    except (OSError, ValueError) as e:
        print(f"hive-c0re: daemon unreachable: {e}", file=sys.stderr)
        raise SystemExit(EXIT_UNREACHABLE) from e
    if not resp.get("ok"):
        err = resp.get("error") or {}
        print(f"hive-c0re: {err.get('code', 'error')}: {err.get('message', '')}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED)
    return resp


def client_command(
    name: str,
    help_: str,
    configure: Callable[[argparse.ArgumentParser], None],
    build: Callable[[argparse.Namespace], Request],
    render: Callable[[dict[str, Any]], int] | None = None,
) -> None:
    """Register ``hive-c0re <name>``: build one request, print the answer."""

    def run(ns: argparse.Namespace) -> int:
        resp = call(ns, build(ns))
        if ns.json:
            print(json.dumps(resp, indent=2, ensure_ascii=False))
            return render_code(name, resp)
        if render is not None:
            return render(resp)
        print("ok")
        return EXIT_OK

    CLI_COMMANDS[name] = CliCommand(help_, configure, run)


# --- the built-in subcommands ----------------------------------------------------
def _name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="agent name")


def _opt_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="agent name (default: every agent)")


def _with_name(cmd: str) -> Callable[[argparse.Namespace], Request]:
    def build(ns: argparse.Namespace) -> Request:
        req: Request = {"cmd": cmd}
        if getattr(ns, "name", None) is not None:
            req["name"] = ns.name
        return req

    return build


def _status_configure(p: argparse.ArgumentParser) -> None:
    _opt_name(p)
    p.add_argument("--watch", action="store_true", help="refresh every second until Ctrl-C")


def _status_run(ns: argparse.Namespace) -> int:
    req = _with_name("status")(ns)
    if not ns.watch:
        resp = call(ns, req)
        if ns.json:
            print(json.dumps(resp, indent=2, ensure_ascii=False))
            return EXIT_OK
        return render_status(resp)
    try:
        while True:
            resp = call(ns, req)
            sys.stdout.write("\x1b[H\x1b[2J")
            print(time.strftime("%H:%M:%S"), "hive-c0re status (Ctrl-C to stop)\n")
            if ns.json:
                print(json.dumps(resp, ensure_ascii=False))
            else:
                render_status(resp)
            sys.stdout.flush()
            time.sleep(1.0)  # a refresh interval, not a wait for a condition
    except KeyboardInterrupt:
        return EXIT_OK


def _send_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("to", help="mailbox: an agent name or manager")
    p.add_argument("body", help="the message; - reads it from stdin")


def _send_build(ns: argparse.Namespace) -> Request:
    body = sys.stdin.read() if ns.body == "-" else ns.body
    return {"cmd": "send", "to": ns.to, "body": body}


def _rollback_configure(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("rev", help="a commit of the applied repo (see history)")


def _events_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent", help="only this agent's events")
    p.add_argument("--after", type=int, default=0, help="only events after this id")
    p.add_argument("--limit", type=int, default=100)


def _events_build(ns: argparse.Namespace) -> Request:
    req: Request = {"cmd": "events", "after": ns.after, "limit": ns.limit}
    if ns.agent:
        req["agent"] = ns.agent
    return req


def _destroy_configure(p: argparse.ArgumentParser) -> None:
    _name(p)
    p.add_argument("--purge", action="store_true", help="also delete state, credentials, mail")


def _register_builtin() -> None:
    CLI_COMMANDS["status"] = CliCommand(
        "show agents and conditions", _status_configure, _status_run
    )
    client_command(
        "diff",
        "show what a reconcile would do (exit 1 when it would act)",
        _opt_name,
        _with_name("diff"),
        render_diff,
    )
    client_command(
        "reconcile",
        "reconcile now and wait for the pass",
        _opt_name,
        _with_name("reconcile"),
        render_status,
    )
    client_command(
        "suspend",
        "pause reconciling an agent (left as it is)",
        _name,
        _with_name("suspend"),
        render_fields("name", "suspended"),
    )
    client_command(
        "resume",
        "resume reconciling an agent",
        _name,
        _with_name("resume"),
        render_fields("name", "suspended"),
    )
    client_command(
        "history",
        "commits of applied that changed an agent",
        _name,
        _with_name("history"),
        render_history,
    )
    client_command(
        "rollback",
        "commit an agent's folder as it was at REV",
        _rollback_configure,
        lambda ns: {"cmd": "rollback", "name": ns.name, "rev": ns.rev},
        render_fields("name", "commit"),
    )
    client_command(
        "events", "the reconcile event log", _events_configure, _events_build, render_events
    )
    client_command(
        "send", "send a message as the operator", _send_configure, _send_build, render_fields("id")
    )
    client_command(
        "kill",
        "stop an agent at once and suspend it",
        _name,
        _with_name("kill"),
        render_fields("name", "suspended"),
    )
    client_command(
        "destroy",
        "remove an agent from applied, then destroy it",
        _destroy_configure,
        lambda ns: {"cmd": "destroy", "name": ns.name, "purge": ns.purge},
        render_fields("name", "commit", "purged"),
    )
    client_command(
        "rebuild", "rebuild an agent from scratch", _name, _with_name("rebuild"), render_status
    )


_register_builtin()
from hyperhive.reconciler.dashboard import cli_verbs  # noqa: E402 - registers pending/approve/deny

cli_verbs.register()


# --- serve and up ----------------------------------------------------------------
def _serve_configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", help="STATE (default /var/lib/hyperhive)")
    p.add_argument("--config", help="TOML config file ([c0re] section)")
    p.add_argument("--runtime", choices=["process", "nspawn", "nixos-container"])
    p.add_argument("--resync", type=float, help="periodic resync in seconds (default 60)")
    p.add_argument("--no-auto-update", action="store_true", help="never rebuild stale agents")
    p.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run agents without bwrap when it is missing (says so in status)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])


def _serve_run(ns: argparse.Namespace) -> int:
    from hyperhive.reconciler import daemon  # noqa: PLC0415 - client commands stay light

    logging.basicConfig(
        level=ns.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per change or HTTP call would drown what an operator needs to read.
    for chatty in ("watchfiles", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    if ns.home is None and ns.run_dir is None and ns.state_dir is None:
        paths = Paths.system()
    else:
        paths = paths_of(ns)
    options = daemon.options_from(
        paths,
        Path(ns.config) if ns.config else None,
        runtime=ns.runtime,
        resync=ns.resync,
        no_auto_update=ns.no_auto_update,
        unsafe_no_sandbox=ns.unsafe_no_sandbox,
    )
    asyncio.run(daemon.serve(options))
    return EXIT_OK


def _up_configure(p: argparse.ArgumentParser) -> None:
    from hyperhive.reconciler import up  # noqa: PLC0415 - client commands stay light

    up.configure(p)


def _up_run(ns: argparse.Namespace) -> int:
    from hyperhive.reconciler import up  # noqa: PLC0415 - client commands stay light

    return up.run(ns)


CLI_COMMANDS["serve"] = CliCommand("run the hive-c0re daemon", _serve_configure, _serve_run)
CLI_COMMANDS["up"] = CliCommand(
    "run a whole local hive (broker, c0re, agents)", _up_configure, _up_run
)


# --- entry point -----------------------------------------------------------------
def _globals(p: argparse.ArgumentParser, *, sub: bool) -> None:
    default = argparse.SUPPRESS if sub else None
    p.add_argument("--home", default=default, help="a local hive dir (RUN=DIR/run)")
    p.add_argument("--run-dir", default=default, help="RUN (where host.sock is)")
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if sub else False,
        help="machine-readable output",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hive-c0re", description=__doc__.splitlines()[0])
    _globals(top, sub=False)
    subs = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in sorted(CLI_COMMANDS):
        spec = CLI_COMMANDS[name]
        p = subs.add_parser(name, help=spec.help, description=spec.help)
        _globals(p, sub=True)
        spec.configure(p)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    try:
        return CLI_COMMANDS[ns.command].run(ns)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    except HiveError as e:
        print(f"hive-c0re: {e.code}: {e.message}", file=sys.stderr)
        return EXIT_REFUSED if ns.command not in ("serve", "up") else EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

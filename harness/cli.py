"""``hive-ag3nt`` and ``hive-m1nd``: serve, mcp, demo-model.

Imports are deferred into each command: ``hive-ag3nt mcp`` is started by
claude on every turn, and the relay it runs must not pay for the SDK, httpx
or uvicorn.
"""

# ruff: noqa: PLC0415 -- deferred imports keep the per-turn relay cheap (see above)

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="hyperhive agent harness")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the turn loop, the MCP socket and the web UI")
    serve.add_argument(
        "--web-listen",
        type=_host_port,
        metavar="HOST:PORT",
        help="also serve the web UI on TCP (development and tests)",
    )
    serve.add_argument("--turn-timeout", type=_positive, default=15 * 60.0, metavar="SECONDS")
    serve.add_argument(
        "--renew-seconds",
        type=_positive,
        default=60.0,
        metavar="SECONDS",
        help="renew the lease of a running turn this often",
    )
    serve.add_argument("--claude", metavar="PATH", help="the claude executable")
    serve.add_argument(
        "--login-command",
        metavar="CMD",
        help="instead of `claude auth login` (also $HIVE_LOGIN_COMMAND)",
    )
    serve.add_argument(
        "--mcp",
        choices=("relay", "direct"),
        default="relay",
        help="relay: claude starts a byte relay to the harness's MCP server; "
        "direct: claude starts a full MCP server per turn",
    )
    mcp = sub.add_parser("mcp", help="the stdio MCP server claude starts (server `hive`)")
    mcp.add_argument(
        "--direct",
        action="store_true",
        help="run the full SDK server here instead of relaying to the harness",
    )
    demo = sub.add_parser("demo-model", help="the scripted fake Anthropic Messages API")
    demo.add_argument("--port", type=int, default=0)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--log", type=Path, metavar="FILE", help="append every request here")
    return parser


def _serve(args: argparse.Namespace, *, manager: bool) -> int:
    import asyncio
    import logging
    import shlex
    import shutil

    from hyperhive.errors import HiveError
    from hyperhive.harness.agent_config import load_config
    from hyperhive.harness.claude_runner import ClaudeSettings
    from hyperhive.harness.serve import ServeOptions, serve

    try:
        cfg = load_config(os.environ, manager=manager)
    except HiveError as e:
        print(f"{'hive-m1nd' if manager else 'hive-ag3nt'}: {e.message}", file=sys.stderr)
        return 2
    # stderr only: every runtime sends it to /state/harness.log (or the journal).
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per broker call is noise
    claude = args.claude or shutil.which("claude") or "claude"
    login = args.login_command or os.environ.get("HIVE_LOGIN_COMMAND")
    options = ServeOptions(
        claude=ClaudeSettings(claude=claude, timeout=args.turn_timeout),
        login_command=tuple(shlex.split(login) if login else (claude, "auth", "login")),
        web_listen=args.web_listen,
        renew_every=args.renew_seconds,
        direct_mcp=args.mcp == "direct",
    )
    try:
        asyncio.run(serve(cfg, options))
    except OSError as e:
        print(f"hive-ag3nt: {e}", file=sys.stderr)
        return 1
    return 0


def _mcp(args: argparse.Namespace) -> int:
    state_dir = Path(os.environ.get("HIVE_STATE_DIR", "/state"))
    if not args.direct:
        from hyperhive.harness.mcp_relay import relay

        return relay(state_dir / "mcp.sock")
    import anyio

    from hyperhive.harness.broker_client import BrokerClient
    from hyperhive.harness.mcp_tools import HiveTools, build_server
    from hyperhive.names import MANAGER_AGENT

    socket_dir = Path(os.environ.get("HIVE_SOCKET_DIR", "/run/hive"))
    manager = os.environ.get("HIVE_AGENT") == MANAGER_AGENT
    c0re = socket_dir / "c0re.sock" if manager else None

    async def run() -> None:
        broker = BrokerClient(socket_dir / "broker.sock")
        try:
            await build_server(HiveTools(broker, c0re)).run_stdio_async()
        finally:
            await broker.aclose()

    anyio.run(run)
    return 0


def _demo_model(args: argparse.Namespace) -> int:
    from hyperhive.harness.demo_model import serve

    return serve(args.host, args.port, args.log)


def run(argv: list[str] | None, *, manager: bool) -> int:
    prog = "hive-m1nd" if manager else "hive-ag3nt"
    args = _parser(prog).parse_args(argv)
    if args.command == "serve":
        return _serve(args, manager=manager)
    if args.command == "mcp":
        return _mcp(args)
    return _demo_model(args)


def main() -> None:
    sys.exit(run(None, manager=False))


def main_manager() -> None:
    sys.exit(run(None, manager=True))


if __name__ == "__main__":
    main()

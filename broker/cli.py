"""``hive-broker serve``: parse flags and config, set up logging, run the daemon.

Errors in flags or the config file end the process with one clear line on
stderr and exit status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from hyperhive.broker.daemon import Broker
from hyperhive.broker.settings import BrokerSettings
from hyperhive.config import load_config
from hyperhive.errors import HiveError
from hyperhive.paths import Paths

#: Net allocations between two young-generation collections (CPython: 700).
GC_GEN0_THRESHOLD = 10_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hive-broker", description="hyperhive message broker")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the broker until SIGTERM")
    serve.add_argument("--home", type=Path, help="a local hive: RUN=DIR/run, STATE=DIR/state")
    serve.add_argument("--run-dir", type=Path, help="sockets (default /run/hyperhive)")
    serve.add_argument("--state-dir", type=Path, help="broker.sqlite (default /var/lib/hyperhive)")
    serve.add_argument("--config", type=Path, help="TOML config file (section [broker])")
    serve.add_argument("--lease-seconds", type=float, help="override [broker] lease_seconds")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    args = parser.parse_args(argv)
    if args.home is not None and (args.run_dir is not None or args.state_dir is not None):
        parser.error("use either --home or --run-dir/--state-dir, not both")
    return args


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One uvicorn server per mailbox: its per-server start/stop lines are noise.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = load_config(args.config)
        settings = BrokerSettings.from_config(config["broker"], lease_seconds=args.lease_seconds)
    except HiveError as e:
        print(f"hive-broker: {e.message}", file=sys.stderr)
        return 2
    if args.home is not None:
        paths = Paths.from_home(args.home)
    else:  # the system defaults of DESIGN §6 for whatever is not given
        system = Paths.system()
        paths = Paths(
            run=args.run_dir.absolute() if args.run_dir else system.run,
            state=args.state_dir.absolute() if args.state_dir else system.state,
        )
    # The commit thread must re-take the GIL after each fsync; with the default
    # 5 ms switch interval a busy event loop would hold every commit up that long.
    sys.setswitchinterval(0.0005)
    # Requests allocate many short-lived containers. With the default gen0
    # threshold (700) the bench's 1000 one-at-a-time messages met ~60 young
    # collections (~0.2 ms) and 5 middle ones (3-9 ms each): the p99 of the
    # wake latency. Most of those objects die by reference count anyway; at
    # 10,000 the same run met 2 collections in all. (The daemon freezes what
    # start-up built, so full passes skip that too.)
    gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)
    broker = Broker(paths, settings)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(broker.serve_forever())
    except HiveError as e:
        print(f"hive-broker: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"hive-broker: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

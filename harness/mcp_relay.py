"""``hive-ag3nt mcp``: a thin byte relay between claude's stdio and the harness's MCP server.

claude starts its MCP servers anew on every turn, so what it starts must be
cheap. This module imports only the standard library; the real server (the
official SDK, in :mod:`mcp_socket`) lives inside the long-lived harness on
``$HIVE_STATE_DIR/mcp.sock``. docs/benchmarks.md ``## Harness`` has the
start-up figures that chose this design.
"""

from __future__ import annotations

import os
import select
import socket
import sys
from pathlib import Path

CHUNK = 65536


def relay(sock_path: Path, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Copy bytes both ways until the server side closes; 0 on a clean end."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(sock_path))
    except OSError as e:
        sys.stderr.write(f"hive-ag3nt mcp: cannot reach the harness at {sock_path}: {e.strerror}\n")
        return 1
    with sock:
        inputs = [stdin_fd, sock.fileno()]
        while True:
            readable, _, _ = select.select(inputs, [], [])
            if stdin_fd in readable:
                data = os.read(stdin_fd, CHUNK)
                if data:
                    sock.sendall(data)
                else:  # claude closed our stdin: half-close, let the server finish
                    inputs.remove(stdin_fd)
                    sock.shutdown(socket.SHUT_WR)
            if sock.fileno() in readable:
                data = sock.recv(CHUNK)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout_fd, view) :]

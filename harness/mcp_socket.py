"""The long-lived ``hive`` MCP server inside the harness, on ``/state/mcp.sock``.

Each connection (one per claude turn, through :mod:`mcp_relay`) is one MCP
session over newline-delimited JSON-RPC, exactly what the stdio transport
speaks, so the relay copies bytes and understands nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

log = logging.getLogger(__name__)


class _SocketLines:
    """The two faces ``stdio_server`` wants (line iterator, write+flush) over one socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        while line := await self._reader.readline():
            yield line.decode("utf-8", errors="replace")

    async def write(self, text: str) -> None:
        self._writer.write(text.encode())

    async def flush(self) -> None:
        await self._writer.drain()


async def serve_session(
    server: MCPServer[Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Run one MCP session until the peer closes; errors end only this session."""
    lines = cast("anyio.AsyncFile[str]", _SocketLines(reader, writer))
    try:
        async with stdio_server(stdin=lines, stdout=lines) as (read_stream, write_stream):
            # MCPServer.run_stdio_async hard-wires the process's stdio; this is its body
            # with our streams.
            low = server._lowlevel_server
            await low.run(read_stream, write_stream, low.create_initialization_options())
    except (ConnectionError, BrokenPipeError):
        pass
    except Exception:
        log.exception("MCP session failed")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await writer.wait_closed()


async def serve_mcp(server: MCPServer[Any], path: Path) -> asyncio.Server:
    """Listen on ``path`` (owner-only), replacing a stale socket from a previous run."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)
    try:
        return await asyncio.start_unix_server(
            lambda r, w: serve_session(server, r, w), path=str(path), limit=1 << 22
        )
    finally:
        os.umask(old)

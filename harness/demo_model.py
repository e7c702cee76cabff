"""``hive-ag3nt demo-model``: the scripted fake of the Anthropic Messages API.

It speaks just enough of the API for Claude Code 2.1.197: ``HEAD /`` (the
CLI's connectivity probe), streaming and non-streaming ``POST /v1/messages``,
and ``POST /v1/messages/count_tokens``. What it answers comes from
:mod:`demo_script`. Every request is appended to ``--log FILE`` as one JSON
line when given, so tests and humans can see what the CLI asked.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hyperhive.harness.demo_script import Reply, Script

_ids = itertools.count(1)


def _tool_name(request: dict[str, Any], short: str) -> str:
    """The CLI names MCP tools ``mcp__hive__send``; the script says ``send``."""
    for tool in request.get("tools") or []:
        name = str(tool.get("name", ""))
        if name == short or name.endswith("__" + short):
            return name
    return "mcp__hive__" + short


def _usage(request: dict[str, Any]) -> int:
    return max(1, len(json.dumps(request.get("messages", []))) // 4)


def _content(request: dict[str, Any], reply: Reply) -> tuple[list[dict[str, Any]], str]:
    if reply.call is not None:
        block = {
            "type": "tool_use",
            "id": f"toolu_{next(_ids):08d}",
            "name": _tool_name(request, reply.call.tool),
            "input": reply.call.args,
        }
        return [block], "tool_use"
    return [{"type": "text", "text": reply.text}], "end_turn"


def _message(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    content, stop = _content(request, reply)
    return {
        "id": f"msg_{next(_ids):08d}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "demo"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": _usage(request), "output_tokens": 12},
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _stream(request: dict[str, Any], reply: Reply) -> AsyncIterator[bytes]:
    message = _message(request, reply)
    content = message.pop("content")
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1}
    yield _sse("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(content):
        if block["type"] == "text":
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "text": ""},
                },
            )
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            empty = {**block, "input": {}}
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield _sse(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


class DemoModel:
    """The Starlette app plus the script's state (``-once`` markers) and the request log."""

    def __init__(self, script: Script | None = None, log: Path | None = None) -> None:
        self.script = script or Script()
        self.log = log
        self.stalled = asyncio.Event()  # never set: a stalled request waits on it
        self.app = Starlette(
            routes=[
                Route("/", self.root, methods=["GET", "HEAD"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
                Route("/{path:path}", self.other, methods=["GET", "POST", "HEAD"]),
            ]
        )

    def _record(self, request: Request, body: dict[str, Any] | None) -> None:
        if self.log is None:
            return
        line = {"method": request.method, "path": request.url.path, "body": body}
        with self.log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    async def root(self, request: Request) -> Response:
        self._record(request, None)
        return Response("hyperhive demo model\n", media_type="text/plain")

    async def other(self, request: Request) -> Response:
        self._record(request, None)
        return JSONResponse(
            {"type": "error", "error": {"type": "not_found_error", "message": "not here"}}, 404
        )

    async def count_tokens(self, request: Request) -> Response:
        body = await _json(request)
        self._record(request, body)
        return JSONResponse({"input_tokens": _usage(body)})

    async def messages(self, request: Request) -> Response:
        body = await _json(request)
        self._record(request, body)
        reply = self.script.reply(body)
        if reply.stall:
            await self.stalled.wait()
        if reply.delay:
            await asyncio.sleep(reply.delay)  # the scripted slowness is the point
        if reply.status != 200:
            error = {"type": "error", "error": {"type": reply.error_type, "message": reply.text}}
            return JSONResponse(error, reply.status)
        if body.get("stream"):
            return StreamingResponse(_stream(body, reply), media_type="text/event-stream")
        return JSONResponse(_message(body, reply))


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def serve(host: str, port: int, log: Path | None) -> int:
    """Bind first, print the URL (the readiness signal), then serve until a signal."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        print(
            f"hive-ag3nt demo-model: cannot listen on {host}:{port}: {e.strerror}", file=sys.stderr
        )
        return 1
    sock.listen(128)
    model = DemoModel(log=log)
    config = uvicorn.Config(
        model.app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    print(f"http://{host}:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])
    return 0

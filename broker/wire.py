"""The HTTP edge shared by both APIs: bounded JSON bodies, typed fields, JSON errors.

Everything a client sends is checked here, once, into plain typed values;
every failure becomes ``{"error": {"code", "message"}}`` with the status of
its code, so no input can reach the domain half-parsed or crash the broker.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hyperhive.broker.errors import BadRequest, TooLarge, http_status
from hyperhive.errors import HiveError

log = logging.getLogger(__name__)


def ok(data: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        status_code=status,
        media_type="application/json",
    )


def error_response(code: str, message: str, status: int) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def read_object(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, refusing more than ``limit`` bytes early."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body over {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"request body is not UTF-8: {e.reason} at byte {e.start}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError as e:
        raise BadRequest("malformed JSON: nested too deeply") from e
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def text_field(
    data: dict[str, Any], name: str, *, required: bool = True, max_bytes: int | None = None
) -> str | None:
    """A string field that is valid UTF-8 text (a lone surrogate escape is not)."""
    value = data.get(name)
    if value is None:
        if required:
            raise BadRequest(f"missing field {name!r}")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise BadRequest(f"field {name!r} is not valid UTF-8 text") from e
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(f"field {name!r} is {size} bytes, over the limit of {max_bytes}")
    return value


def id_field(data: dict[str, Any], name: str = "id") -> int:
    value = data.get(name)
    if value is None:
        raise BadRequest(f"missing field {name!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"field {name!r} must be an integer")
    if not 0 < value < 2**63:
        raise BadRequest(f"field {name!r} is out of range")
    return value


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise BadRequest(f"query parameter {name!r} must be an integer") from e
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name!r} must be between {lo} and {hi}")
    return value


def seconds_param(request: Request, name: str, default: float, cap: float) -> float:
    """A non-negative number of seconds, clamped to ``cap``."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as e:
        raise BadRequest(f"query parameter {name!r} must be a number of seconds") from e
    if math.isnan(value) or value < 0:
        raise BadRequest(f"query parameter {name!r} must be zero or more")
    return min(value, cap)


async def on_hive_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HiveError):
        return await on_crash(request, exc)
    return error_response(exc.code, exc.message, http_status(exc))


async def on_http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        return await on_crash(request, exc)
    if exc.status_code == 404:
        return error_response("not_found", f"no such endpoint: {request.url.path}", 404)
    if exc.status_code == 405:
        return error_response(
            "method_not_allowed", f"{request.method} is not allowed on {request.url.path}", 405
        )
    return error_response("bad_request", str(exc.detail), exc.status_code)


async def on_crash(request: Request, exc: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_response("internal", "internal error; see the broker's log", 500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HiveError: on_hive_error,
    HTTPException: on_http_error,
    Exception: on_crash,
}

"""The API on a mailbox's own socket: the caller *is* that mailbox.

Identity is the socket the request arrived on — the app is built for one
mailbox name and never reads a ``from`` field, so a client holding agent a's
socket can neither read b's inbox nor send as b.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive

from hyperhive.broker.errors import BadRequest
from hyperhive.broker.mailroom import Mailroom
from hyperhive.broker.wire import (
    EXCEPTION_HANDLERS,
    id_field,
    ok,
    read_object,
    seconds_param,
    text_field,
)


async def watch_disconnect(receive: Receive, gone: asyncio.Future[None]) -> None:
    """Resolve ``gone`` when the client hangs up (the request body is already read)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            if not gone.done():
                gone.set_result(None)
            return


def agent_app(mailroom: Mailroom, mailbox: str) -> Starlette:
    limit = mailroom.settings.max_request
    max_body = mailroom.settings.max_body

    async def send(request: Request) -> Response:
        data = await read_object(request, limit)
        to = text_field(data, "to")
        body = text_field(data, "body", max_bytes=max_body)
        key = text_field(data, "key", required=False, max_bytes=256)
        if to is None or body is None:  # required fields: text_field raised already
            raise BadRequest("missing field")
        sent = await mailroom.send(mailbox, to, body, key)
        return ok({"id": sent.id}, 201 if sent.created else 200)

    async def recv(request: Request) -> Response:
        wait = seconds_param(request, "wait", 0.0, mailroom.settings.max_wait)
        if wait == 0:
            msg = await mailroom.recv(mailbox, 0)
        else:
            gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            watcher = asyncio.ensure_future(watch_disconnect(request.receive, gone))
            try:
                msg = await mailroom.recv(mailbox, wait, gone)
            finally:
                # Not awaited: the cancellation completes on the next loop turn,
                # and the reply need not wait behind the other tasks of this one.
                watcher.cancel()
        if msg is None:
            return Response(status_code=204)
        return ok(msg.delivery())

    async def ack(request: Request) -> Response:
        await mailroom.ack(mailbox, id_field(await read_object(request, limit)))
        return ok({})

    async def nack(request: Request) -> Response:
        await mailroom.nack(mailbox, id_field(await read_object(request, limit)))
        return ok({})

    async def renew(request: Request) -> Response:
        mailroom.renew(mailbox, id_field(await read_object(request, limit)))
        return ok({})

    async def healthz(request: Request) -> Response:
        return ok({"ok": True, "mailbox": mailbox})

    routes = [
        Route("/send", send, methods=["POST"]),
        Route("/recv", recv, methods=["GET"]),
        Route("/ack", ack, methods=["POST"]),
        Route("/nack", nack, methods=["POST"]),
        Route("/renew", renew, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)

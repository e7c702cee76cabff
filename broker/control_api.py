"""The control socket ``RUN/broker.sock``: hive-c0re and the operator's tools.

It opens and closes mailboxes (their sockets come and go with them), sends
as ``operator`` or ``system``, lists messages, streams events, and reports
depth and health. Only root (c0re) can reach it: the socket is 0600.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from hyperhive.broker import store
from hyperhive.broker.errors import BadRequest, SocketUnavailable
from hyperhive.broker.events import EventFeed
from hyperhive.broker.mailroom import Mailroom
from hyperhive.broker.wire import EXCEPTION_HANDLERS, int_param, ok, read_object, text_field
from hyperhive.names import OPERATOR, SYSTEM, validate_mailbox_name

#: Opens or closes the socket of a mailbox (the daemon's listeners).
SocketHook = Callable[[str], Awaitable[None]]


def control_app(
    mailroom: Mailroom, feed: EventFeed, open_socket: SocketHook, close_socket: SocketHook
) -> Starlette:
    limit = mailroom.settings.max_request
    max_body = mailroom.settings.max_body

    async def put_mailbox(request: Request) -> Response:
        name = validate_mailbox_name(request.path_params["name"])
        created = await mailroom.open(name)
        try:
            await open_socket(name)
        except OSError as e:
            raise SocketUnavailable(f"cannot serve the socket of {name}: {e}") from e
        return ok({"name": name, "created": created}, 201 if created else 200)

    async def delete_mailbox(request: Request) -> Response:
        name = validate_mailbox_name(request.path_params["name"])
        purge = request.query_params.get("purge", "") in ("1", "true", "yes")
        # Detach first: waiting recv calls return 204, so the socket closes promptly.
        existed = await mailroom.close(name, purge=purge)
        await close_socket(name)
        return ok({"name": name, "deleted": existed, "purged": purge})

    async def send(request: Request) -> Response:
        data = await read_object(request, limit)
        sender = text_field(data, "from")
        if sender not in (OPERATOR, SYSTEM):
            raise BadRequest("'from' must be 'operator' or 'system' on the control socket")
        to = text_field(data, "to")
        body = text_field(data, "body", max_bytes=max_body)
        key = text_field(data, "key", required=False, max_bytes=256)
        if to is None or body is None:  # required fields: text_field raised already
            raise BadRequest("missing field")
        sent = await mailroom.send(sender, to, body, key)
        return ok({"id": sent.id}, 201 if sent.created else 200)

    async def messages(request: Request) -> Response:
        after = int_param(request, "after", 0, 0, 2**63 - 1)
        count = int_param(request, "limit", 100, 1, 1000)
        agent = request.query_params.get("agent") or None
        if agent is not None and agent not in (OPERATOR, SYSTEM):
            agent = validate_mailbox_name(agent)
        rows = store.messages_after(mailroom.reader, after, count, agent)
        return ok({"messages": [m.listing(mailroom.state_of(m)) for m in rows]})

    async def stream(request: Request) -> Response:
        raw = request.headers.get("last-event-id")
        last: int | None = None
        if raw is not None and raw.strip() != "":
            try:
                last = int(raw)
            except ValueError as e:
                raise BadRequest("Last-Event-ID must be an event id (an integer)") from e
            if last < 0:
                raise BadRequest("Last-Event-ID must not be negative")
        frames = feed.stream(last, mailroom.settings.ping_seconds, lambda: mailroom.closing)
        return StreamingResponse(
            frames,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def stats(request: Request) -> Response:
        return ok(mailroom.stats())

    async def healthz(request: Request) -> Response:
        return ok({"ok": True, "mailboxes": len(mailroom.boxes), "last_event_id": feed.last_id})

    routes = [
        Route("/mailboxes/{name}", put_mailbox, methods=["PUT"]),
        Route("/mailboxes/{name}", delete_mailbox, methods=["DELETE"]),
        Route("/send", send, methods=["POST"]),
        Route("/messages", messages, methods=["GET"]),
        Route("/stream", stream, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)

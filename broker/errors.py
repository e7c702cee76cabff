"""The broker's error tree: each class carries its stable code and HTTP status."""

from __future__ import annotations

from hyperhive.errors import BadRequest, Conflict, HiveError, NotFound

__all__ = [
    "BadRequest",
    "Conflict",
    "NotFound",
    "ShuttingDown",
    "SocketUnavailable",
    "TooLarge",
    "http_status",
]


class TooLarge(HiveError):
    code = "too_large"


class ShuttingDown(HiveError):
    """The broker is stopping; the client should retry against the next one."""

    code = "unavailable"


class SocketUnavailable(HiveError):
    """A mailbox's socket could not be bound (its path too long, its dir unwritable)."""

    code = "unavailable"


STATUS = {
    "bad_request": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "too_large": 413,
    "unavailable": 503,
}


def http_status(err: HiveError) -> int:
    """The HTTP status for an error; an unknown code is a client error, not a crash."""
    return STATUS.get(err.code, 400)

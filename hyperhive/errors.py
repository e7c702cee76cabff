"""The root of every service's exception tree: a stable code and one clear message."""

from __future__ import annotations


class HiveError(Exception):
    """An error a user may see. ``code`` is stable; ``message`` is for humans."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class BadRequest(HiveError):
    code = "bad_request"


class NotFound(HiveError):
    code = "not_found"


class Conflict(HiveError):
    code = "conflict"

"""Error classes shared by every layer; each carries the HTTP status the API sends."""

from __future__ import annotations


class BerthError(Exception):
    """Base of every error berth raises on purpose."""

    http_status = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(BerthError):
    http_status = 400


class Unauthorized(BerthError):
    http_status = 401


class Forbidden(BerthError):
    http_status = 403


class NotFound(BerthError):
    http_status = 404


class AlreadyExists(BerthError):
    http_status = 409


class Conflict(BerthError):
    http_status = 409


class NotModified(BerthError):
    http_status = 304


class Unavailable(BerthError):
    http_status = 503


class NotImplementedErr(BerthError):
    http_status = 501


class LimitExceeded(InvalidArgument):
    """A configured limit (size, entries, depth) was exceeded."""


class DataCorrupt(BerthError):
    """Stored or received bytes do not match their digest, or cannot be parsed."""

    http_status = 500


_BY_STATUS = {
    400: InvalidArgument,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    501: NotImplementedErr,
    503: Unavailable,
}


def from_status(status: int, message: str) -> BerthError:
    """Map an HTTP status and message (as sent by an engine) back to an error class."""
    return _BY_STATUS.get(status, BerthError)(message)

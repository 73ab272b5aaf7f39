"""The error hierarchy: domain failures with the contract's code, mapped to HTTP in one place."""

from __future__ import annotations

from typing import Any


class CaracalError(Exception):
    """A failure with a wire code (`{"error": code}`), an HTTP status and optional extra members."""

    status = 400
    title = "Bad Request"

    def __init__(self, code: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail
        self.extra = extra


class InvalidInput(CaracalError):
    status = 400
    title = "Bad Request"


class Unauthorized(CaracalError):
    status = 401
    title = "Unauthorized"


class Forbidden(CaracalError):
    status = 403
    title = "Forbidden"


class NotFound(CaracalError):
    status = 404
    title = "Not Found"


class Conflict(CaracalError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(CaracalError):
    status = 413
    title = "Content Too Large"


class Unprocessable(CaracalError):
    status = 422
    title = "Unprocessable Content"


class RateLimited(CaracalError):
    """Over a limit; `retry_after_s` (the seconds until its window ends) becomes the Retry-After header."""

    status = 429
    title = "Too Many Requests"

    def __init__(
        self, code: str, detail: str | None = None, *, retry_after_s: int | None = None, **extra: Any
    ) -> None:
        super().__init__(code, detail, **extra)
        self.retry_after_s = retry_after_s


class Unavailable(CaracalError):
    """A dependency (Postgres, Redis) does not answer; the request may be retried."""

    status = 503
    title = "Service Unavailable"


class Overloaded(Unavailable):
    """This process has no capacity left right now (its connection pool is busy): retry shortly."""

    retry_after_s = 1

"""The one error mapper: every failure becomes the contract's `{"error": code}` plus RFC 9457 members."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

from caracal.db.engine import translate_db_error
from caracal.db.integrity import INVALID_INPUT
from caracal.errors import CaracalError, Overloaded, RateLimited

log = logging.getLogger("caracal.api.errors")
PROBLEM = "application/problem+json"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    499: "Client Closed Request",  # nginx's: the client left before the answer (CLIENT_CLOSED)
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
CLIENT_CLOSED = 499
_CLIENT_GONE = "client disconnected prematurely"  # litestar.connection.Request.stream's detail
_MISSING_FIELD = re.compile(r"^Object missing required field `([^`]+)`")
_PATH_IN_MESSAGE = re.compile(r"`\$((?:\.[^`.\[]+|\[\d+\])*)`")


def problem(status: int, code: str, detail: str | None = None, **extra: Any) -> Response[dict[str, Any]]:
    title = _TITLES.get(status, "Error")
    # error_description: the original's later clients read it (DESIGN.md); the same text as detail
    body = {
        "error": code,
        "type": f"urn:caracal:error:{code}",
        "title": title,
        "status": status,
        "detail": detail or title,
        "error_description": detail or title,
        **extra,
    }
    return Response(body, status_code=status, media_type=PROBLEM)


def _request_id(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, CaracalError):
        response = problem(exc.status, exc.code, exc.detail, **exc.extra)
        if isinstance(exc, (Overloaded, RateLimited)) and exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    if isinstance(exc, HTTPException):
        return _http_problem(request, exc)
    translated = translate_db_error(exc)
    if isinstance(translated, CaracalError):
        code = _route_code(request, translated.code)
        return problem(translated.status, code, translated.detail, **translated.extra)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        500,
        "internal_error",
        "The service failed to process the request",
        error_description="The service failed to process the request",
        requestId=_request_id(request),
    )


def _route_code(request: Request[Any, Any, Any], code: str) -> str:
    """A value the database refused (SQLSTATE class 22) is a bad field: the route's own 400 code."""
    handler = request.scope.get("route_handler")
    route_code = handler.opt.get("body_error") if handler is not None else None
    if code == INVALID_INPUT and isinstance(route_code, str) and route_code != "invalid_body":
        return route_code
    return code


def _http_problem(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    handler = request.scope.get("route_handler")
    if handler is None and isinstance(exc, NotFoundException):
        return problem(
            404,
            "Not Found",
            f"Route {request.method}:{request.url.path} not found",
            message=f"Route {request.method}:{request.url.path} not found",
            statusCode=404,
        )
    status = exc.status_code
    if status == 500 and exc.detail == _CLIENT_GONE:
        # Litestar's answer when the client left before its body was read (a client that timed out
        # on a queued request): not a server failure, so not a 5xx in the access log, metrics and
        # audit; nginx's 499. Nobody reads the response.
        return problem(CLIENT_CLOSED, "client_closed_request", "the client closed the connection first")
    if status == 413:
        return problem(413, "payload_too_large", "the request body is larger than API_BODY_LIMIT_BYTES")
    if status == 405:
        response = problem(405, "method_not_allowed", f"{request.method} is not allowed here")
        response.headers.update({k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"})
        return response
    if status == 400 and handler is not None:
        return _body_problem(request, exc, handler.opt.get("body_error", "invalid_body"))
    return problem(status, _TITLES.get(status, "error").lower().replace(" ", "_"), str(exc.detail))


def _body_problem(request: Request[Any, Any, Any], exc: HTTPException, code: str) -> Response[dict[str, Any]]:
    issues = _issues(exc)
    detail = "; ".join(issue["message"] for issue in issues) or str(exc.detail)
    if code != "invalid_body":
        return problem(400, code, detail, issues=issues)
    return problem(
        400,
        code,
        detail,
        error_description="Request body failed validation",
        requestId=_request_id(request),
        details={"issues": issues},
    )


def _issues(exc: HTTPException) -> list[dict[str, Any]]:
    if not isinstance(exc, ValidationException) or not isinstance(exc.extra, list):
        return [{"path": [], "message": str(exc.detail)}]
    issues = []
    for item in exc.extra:
        message = str(item.get("message", "invalid")) if isinstance(item, dict) else str(item)
        key = item.get("key") if isinstance(item, dict) else None
        found = _PATH_IN_MESSAGE.search(message)
        path = [p for p in re.split(r"[.\[\]]", found.group(1)) if p] if found else []
        missing = _MISSING_FIELD.search(message)
        if missing:  # the path names the object; the issue is its missing field (as the original says)
            path.append(missing.group(1))
        if not path and key and key != "data":
            path = [str(key)]
        issues.append({"path": path, "message": message})
    return issues

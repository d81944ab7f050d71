"""Every refusal as a clear HTTP status and one body shape: {"error": {"code", "message"}}.

`STATUS` is the one table from core ErrorCodes to statuses:
400 malformed input, 401 bad signature, 403 not the owner, 404 unknown thing,
409 conflicts with what already happened (replays, nonces), 422 well-formed
but refused by the exchange's rules, 503 the exchange cannot decide now
(no fresh oracle price). Failures of our own upstream services are 502/503
with codes of their own, so a client can tell "you" from "us".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from perpnet.core.errors import CoreError, ErrorCode

STATUS: Mapping[ErrorCode, int] = {
    ErrorCode.INVALID_FIELD: 400,
    ErrorCode.ENCODING: 400,
    ErrorCode.BAD_SIGNATURE: 401,
    ErrorCode.NOT_OWNER: 403,
    ErrorCode.UNKNOWN_MARKET: 404,
    ErrorCode.UNKNOWN_ACCOUNT: 404,
    ErrorCode.UNKNOWN_ORDER: 404,
    ErrorCode.REPLAY: 409,
    ErrorCode.DUPLICATE_ORDER: 409,
    ErrorCode.BAD_NONCE: 409,
    ErrorCode.DEPOSIT_ORDER: 409,
    ErrorCode.CLOCK: 409,
    ErrorCode.NO_PRICE: 503,
    ErrorCode.ORACLE_STALE: 503,
    ErrorCode.ORACLE_QUORUM: 503,
}
REFUSED = 422  # every other code: a well-formed request the exchange's rules refuse


def status_of(code: ErrorCode) -> int:
    return STATUS.get(code, REFUSED)


class ApiError(Exception):
    """A refusal that is not a core one: not found records, upstream failures."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def unavailable(what: str) -> ApiError:
    return ApiError(503, "UNAVAILABLE", f"{what} is unavailable, retry later")


def body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


async def refused(_request: Request, exc: Exception) -> JSONResponse:
    status, content = refusal(exc)
    return JSONResponse(content, status_code=status)


def invalid_fields(errors: Sequence[Any]) -> dict[str, Any]:
    """The body of a 400 INVALID_FIELD for pydantic errors, naming each field and why."""
    fields = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in errors]
    message = "; ".join(f"{f['field']}: {f['reason']}" for f in fields)
    return body("INVALID_FIELD", message, fields=fields)


def refusal(exc: Exception) -> tuple[int, dict[str, Any]]:
    """A CoreError's or ApiError's status and body."""
    if isinstance(exc, CoreError):
        return status_of(exc.code), body(exc.code.value, exc.message)
    if isinstance(exc, ApiError):
        return exc.status, body(exc.code, exc.message)
    raise exc


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """Schema errors are 400 INVALID_FIELD, naming each field and why."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(invalid_fields(exc.errors()), status_code=400)


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404/405 in the same body shape."""
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(body(code, str(exc.detail)), status_code=exc.status_code)


HANDLERS = {
    CoreError: refused,
    ApiError: refused,
    RequestValidationError: validation_error,
    StarletteHTTPException: http_error,
}


def from_upstream(message: str) -> CoreError | None:
    """A core refusal relayed by a service as "CODE: reason", or None if it is not one."""
    code, sep, reason = message.partition(":")
    if sep and code in ErrorCode.__members__:
        return CoreError(ErrorCode(code), reason.strip())
    return None

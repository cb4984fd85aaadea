"""What every route depends on: the caller's API key (checked before anything else), the
server state, and the one error type routes raise (``ApiError``, answered in the OpenAI shape)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ragtune.serve.keys import KeyInfo
from ragtune.serve.state import ServerState


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def error_body(status: int, kind: str, message: str) -> dict:
    return {"error": {"message": message, "type": kind, "code": status}}


def state(request: Request) -> ServerState:
    return request.app.state.ragtune


def caller(request: Request) -> KeyInfo:
    """The caller (API key, identity token or trusted proxy); 401 without one (the same answer for
    missing, unknown and revoked keys). Behind :class:`~ragtune.serve.guard.Guard` the caller was
    already identified, before the body was read."""
    if (checked := request.scope.get("ragtune.key")) is not None:
        return checked
    headers = {k.lower(): v for k, v in request.headers.items()}
    info, why = state(request).auth.identify_or_reason(headers, request.client.host if request.client else None)
    if info is None:
        raise ApiError(401, "unauthorized", why, {"WWW-Authenticate": "Bearer"})
    return info


def admin(info: Annotated[KeyInfo, Depends(caller)]) -> KeyInfo:
    if not info.is_admin:
        raise ApiError(403, "forbidden", "this needs an admin key")
    return info


Caller = Annotated[KeyInfo, Depends(caller)]
Admin = Annotated[KeyInfo, Depends(admin)]
State = Annotated[ServerState, Depends(state)]

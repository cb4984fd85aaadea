"""The server's outer gate, run before FastAPI reads a byte of the body: the caller (API key,
identity token or trusted proxy: :mod:`ragtune.serve.identity`) is checked first (a request without a valid key gets its 401 whatever its body holds: no parsing, no
validation errors that describe the API to a stranger, no 50 MB read), then the body's size is
bounded (``Content-Length`` up front, and counted as it streams in for chunked bodies).

A plain ASGI middleware rather than a FastAPI dependency because dependencies run only after the
body has been received and parsed.
"""

from __future__ import annotations

import json
from typing import Callable

import anyio

from ragtune.serve.auth import error_body
from ragtune.serve.identity import Authenticator

KEY_SCOPE = "ragtune.key"  # where the checked key waits for the `caller` dependency


def _too_large(limit_mb: float) -> str:
    return f"request body over the {limit_mb:g} MB limit of this route"


class Guard:
    def __init__(self, app, auth: Callable[[], Authenticator], public: frozenset[str], limit_mb: Callable[[str, str], float]):
        self.app, self.auth, self.public, self.limit_mb = app, auth, public, limit_mb

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.public:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = self.auth()
        client = (scope.get("client") or (None,))[0]
        if auth.needs_network(headers):  # a token may need the provider's keys fetched: not on the event loop
            info, why = await anyio.to_thread.run_sync(auth.identify_or_reason, headers, client)
        else:
            info, why = auth.identify_or_reason(headers, client)
        if info is None:
            return await _reply(send, 401, "unauthorized", why, {"www-authenticate": "Bearer"})
        scope[KEY_SCOPE] = info
        limit_mb = self.limit_mb(scope["method"], scope["path"])
        limit = int(limit_mb * 2**20)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _reply(send, 413, "too_large", _too_large(limit_mb))
        seen, answered = 0, False

        async def counted():
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer here: the app would wrap any error raised while it reads the body
                    # into its own 400. To the app the client has gone, and what it sends is dropped.
                    answered = True
                    await _reply(send, 413, "too_large", _too_large(limit_mb))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not answered:
                await send(message)

        await self.app(scope, counted, guarded_send)


async def _reply(send, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(error_body(status, kind, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})

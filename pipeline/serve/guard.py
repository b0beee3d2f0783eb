"""The door of ``ragindex serve``: a tenant's key is checked before its request body is read, and bodies are bounded.

FastAPI reads and parses a request's body before any dependency runs, so a key
checked in a dependency came after the whole body was in memory: one
unauthenticated 400 MB request grew the server from 151 MB to 1.8 GB. ``Guard``
is plain ASGI middleware in front of every route:

* under ``/v1/tenants/{tenant}/`` the ``Authorization: Bearer`` key must be one of
  that tenant's, or the answer is 401 before a byte of the body is read;
* a body is read up to ``max_body`` bytes (1 MiB by default, ``--max-body-bytes``):
  a ``Content-Length`` above it is answered 413 on the header alone, a chunked body
  as soon as it passes the bound; only then is the body handed on, to be parsed.

Both refusals close the connection, so the rest of a refused body is never read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool

MAX_BODY_BYTES = 1 << 20
TENANT_PREFIX = "/v1/tenants/"
UNAUTHORIZED = "missing or invalid API key for this tenant"


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, else None."""
    return header[7:].strip() if header and header.lower().startswith("bearer ") else None


async def answer(send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """A JSON ``{"detail": ...}`` answer that closes the connection (whatever is left of the request is not read)."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: ``authorized(tenant, authorization header)`` before the body, the body bounded before parsing.

    ``refused(status)`` is told of each request it turns away (for the metrics).
    """

    def __init__(self, app, authorized: Callable[[str, str | None], bool], refused: Callable[[int], None],
                 max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.authorized = authorized
        self.refused = refused
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        if path.startswith(TENANT_PREFIX):
            tenant = path[len(TENANT_PREFIX):].split("/", 1)[0]
            if not await run_in_threadpool(self.authorized, tenant, headers.get(b"authorization")):
                await self._refuse(send, 401, UNAUTHORIZED, ((b"www-authenticate", b"Bearer"),))
                return
        declared = headers.get(b"content-length", "0")
        if not declared.isdigit():
            await self._refuse(send, 400, f"invalid Content-Length {declared[:40]!r}")
            return
        if int(declared) > self.max_body:
            await self._refuse(send, 413, f"request body of {int(declared)} bytes; the limit is {self.max_body} bytes")
            return
        body = await self._read(receive)
        if body is None:
            await self._refuse(send, 413, f"request body over the limit; the limit is {self.max_body} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive) -> bytes | None:
        """The whole body, or None as soon as it passes ``max_body`` (the rest stays unread)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: hand on an empty body, nobody reads it
                return b"".join(chunks)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return None
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.refused(status)
        await answer(send, status, detail, headers)


def _replay(body: bytes, receive) -> Callable[[], Awaitable[dict]]:
    """``receive`` for the app: the body already read, in one message, then whatever the client sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict:
        return pending.pop() if pending else await receive()

    return replay

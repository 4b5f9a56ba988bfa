"""Limits on what a client may send and how slowly: body size, body and header read time.

`BodyLimit` is ASGI middleware (a body over the limit gets 413; one that does not arrive in time
gets 408). `header_timeout_protocol` is uvicorn's HTTP protocol with a deadline for request
headers, which the ASGI app never sees. Together they keep a slowloris (many connections each
trickling a byte at a time) from holding sockets open for ever.
"""

from __future__ import annotations

import asyncio

import h11
from fastapi.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 before the app reads it.

    Most clients (urllib, httpx, browsers) send the whole body before reading the answer; if
    the server answered and closed with the body unread, they would see a connection reset
    instead of the 413. So the rest of an oversized body is read and dropped first, for bodies
    up to `discard_bytes` in all (64 MiB, or twice the limit if that is more) and for at most
    `DISCARD_S` seconds; beyond those bounds the server answers and closes at once. Clients that
    wait for `100 Continue` (curl) get the 413 without sending the body. A body that takes over
    `read_timeout_s` to arrive gets 408 and the connection is closed.
    """

    DISCARD_BYTES = 64 * 1024 * 1024
    DISCARD_S = 5.0

    def __init__(self, app, max_bytes: int, read_timeout_s: float = 30.0):
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.discard_bytes = max(self.DISCARD_BYTES, 2 * max_bytes)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit():
            return await self._reject(send)
        if int(declared) > self.max_bytes:
            # Reading would make the server send `100 Continue`, asking for the body.
            expects_continue = headers.get(b"expect", b"").lower() == b"100-continue"
            if int(declared) <= self.discard_bytes and not expects_continue:
                await self._discard(receive, 0)
            return await self._reject(send)
        try:
            body = await asyncio.wait_for(self._read(receive, send), self.read_timeout_s)
        except TimeoutError:
            detail = f"the request body did not arrive within {self.read_timeout_s:g} s"
            return await _answer(send, 408, detail)
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive, send) -> bytes | None:
        """The whole body, or None once answered (413) or when the client has gone."""
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                if more:
                    await self._discard(receive, len(body))
                await self._reject(send)
                return None
        return body

    async def _discard(self, receive, read: int) -> None:
        """Read and drop the rest of the body, within the byte and time bounds."""

        async def drain() -> None:
            total = read
            while total <= self.discard_bytes:
                message = await receive()
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return
                total += len(message.get("body", b""))

        try:
            await asyncio.wait_for(drain(), self.DISCARD_S)
        except TimeoutError:  # a slow sender: answer and close
            pass

    async def _reject(self, send) -> None:
        await _answer(send, 413, f"request body over the limit of {self.max_bytes:,} bytes")


async def _answer(send, status: int, detail: str) -> None:
    """A JSON error, closing the connection: the rest of the request may still be on its way."""
    response = JSONResponse({"detail": detail}, status, headers={"Connection": "close"})
    await response({"type": "http"}, None, send)


def _replay(body: bytes, receive):
    """A `receive` that returns the buffered body once, then waits on the real one."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request headers take over `seconds`.

    uvicorn closes idle keep-alive connections, but not one that trickles its headers a byte at
    a time: its socket would stay open for ever, and enough of them exhaust the server's files.
    """

    class HeaderDeadline(H11Protocol):
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._start_clock()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._start_clock()  # the clock for the next request's headers on this connection

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

        def _start_clock(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(seconds, self._headers_late)

        def _headers_late(self) -> None:
            # IDLE: no complete request head yet (a request under way is the body's business).
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline

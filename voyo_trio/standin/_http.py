"""HTTP/1.1 server connections on h11, so handlers control the socket itself.

Each accepted TLS connection runs in its own trio task. The task reads a
request, passes it to the first matching Route's handler together with an
Exchange that writes the response, and after a complete response starts the
next keep-alive cycle. A handler can also reset the connection or stall it,
which is how the stand-in injects faults.
"""

from __future__ import annotations

import contextlib
import fcntl
import http
import logging
import socket
import struct
import termios
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit

import h11
import trio

logger = logging.getLogger(__name__)

TlsStream = trio.SSLStream[trio.SocketStream]
Headers = Sequence[tuple[str, str]]

RECEIVE_SIZE = 64 * 1024
MAX_REQUEST_BODY_BYTES = 1024 * 1024
# Upper bound on how long a reset waits for the peer to acknowledge the bytes
# already written, so that the reset does not discard them.
RESET_FLUSH_TIMEOUT_S = 1.0
_FLUSH_POLL_S = 0.005

_Incoming = h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]


@dataclass(frozen=True)
class Request:
    """One parsed request: method, raw target, decoded path and query, body."""

    method: str
    target: str
    path: str
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]
    body: bytes = b""

    def query_value(self, name: str) -> str | None:
        """Return the first value of a query parameter, or None if it is absent."""
        values = self.query.get(name)
        return values[0] if values else None


Handler = Callable[[Request, "Exchange"], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    """Handler for a set of methods on a path.

    A path ending in ``/`` matches every path under it, any other path
    matches only itself.
    """

    methods: frozenset[str]
    path: str
    handler: Handler

    def matches_path(self, path: str) -> bool:
        """Return whether this route serves the request path."""
        if self.path.endswith("/"):
            return path.startswith(self.path)
        return path == self.path


class ConnectionEndedError(Exception):
    """Raised to end a connection task without a graceful close."""


class Exchange:
    """Response writer for one request, with raw control of the connection."""

    def __init__(
        self, stream: TlsStream, connection: h11.Connection, method: str
    ) -> None:
        self._stream = stream
        self._connection = connection
        self._is_head = method == "HEAD"
        self.head_sent = False

    async def send_head(self, status: int, headers: Headers) -> None:
        """Send the status line and headers."""
        reason = reason_phrase(status).encode("ascii")
        response = h11.Response(
            status_code=status, headers=list(headers), reason=reason
        )
        await self._send_event(response)
        self.head_sent = True

    async def send_body(self, data: bytes) -> int:
        """Send body bytes and return how many went out, 0 for a HEAD request."""
        if self._is_head or not data:
            return 0
        await self._send_event(h11.Data(data=data))
        return len(data)

    async def finish(self) -> None:
        """End the response so the connection can serve its next request."""
        await self._send_event(h11.EndOfMessage())

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Send a complete response with a Content-Length header."""
        length = ("Content-Length", str(len(body)))
        await self.send_head(status, [*headers, length])
        await self.send_body(body)
        await self.finish()

    async def reset(self) -> NoReturn:
        """Close the connection abortively, so the client sees a reset."""
        await reset_connection(self._stream)
        raise ConnectionEndedError("connection reset by a fault")

    async def stall(self) -> NoReturn:
        """Send nothing more until the client closes or the server stops."""
        await _discard_until_closed(self._stream)
        raise ConnectionEndedError("stalled connection closed by the client")

    async def _send_event(self, event: h11.Event) -> None:
        data = self._connection.send(event)
        if data:
            await self._stream.send_all(data)


def reason_phrase(status: int) -> str:
    """Return the standard reason phrase of a status, or "" for an unlisted one."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


async def reset_connection(stream: TlsStream) -> None:
    """Close the TCP socket under a TLS stream with SO_LINGER 0, sending RST."""
    transport = stream.transport_stream
    await _wait_until_acknowledged(transport.socket)
    linger = struct.pack("ii", 1, 0)
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    await transport.aclose()


async def _wait_until_acknowledged(sock: trio.socket.SocketType) -> None:
    # An abortive close drops unacknowledged bytes in the send queue, so
    # wait until the peer has acknowledged what the fault promised to send.
    # The kernel offers no wakeup for that, hence the polling.
    with trio.move_on_after(RESET_FLUSH_TIMEOUT_S):
        while _unacknowledged_bytes(sock) > 0:  # noqa: ASYNC110
            await trio.sleep(_FLUSH_POLL_S)


def _unacknowledged_bytes(sock: trio.socket.SocketType) -> int:
    # NOTE: TIOCOUTQ (SIOCOUTQ) counts unacknowledged TCP bytes on Linux;
    # other systems report 0 here, so a reset there may drop queued bytes.
    request = getattr(termios, "TIOCOUTQ", None)
    if request is None:
        return 0
    result = fcntl.ioctl(sock.fileno(), request, struct.pack("i", 0))
    count: int = struct.unpack("i", result)[0]
    return count


async def _discard_until_closed(stream: TlsStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while await stream.receive_some(RECEIVE_SIZE):
            pass


async def respond_text(
    exchange: Exchange, status: int, text: str, headers: Headers = ()
) -> None:
    """Send a complete text/plain response."""
    content_type = ("Content-Type", "text/plain; charset=utf-8")
    await exchange.respond(status, [content_type, *headers], text.encode())


def find_handler(routes: Sequence[Route], request: Request) -> Handler:
    """Return the handler of the first route for the request's path and method."""
    matching = [route for route in routes if route.matches_path(request.path)]
    for route in matching:
        if request.method in route.methods:
            return route.handler
    if matching:
        return _method_not_allowed(matching)
    return _not_found


async def _not_found(request: Request, exchange: Exchange) -> None:
    await respond_text(exchange, 404, f"404 Not Found: {request.path}\n")


def _method_not_allowed(routes: Sequence[Route]) -> Handler:
    allowed = sorted({method for route in routes for method in route.methods})

    async def reject(request: Request, exchange: Exchange) -> None:
        text = f"405 Method Not Allowed: {request.method} {request.path}\n"
        await respond_text(exchange, 405, text, [("Allow", ", ".join(allowed))])

    return reject


async def serve_connection(
    stream: TlsStream, routes: Sequence[Route], idle_timeout_s: float
) -> None:
    """Serve requests on one TLS connection until it closes or idles out."""
    peer = _peer_name(stream)
    connection = _Connection(stream, routes, idle_timeout_s, peer)
    try:
        await connection.run()
    except ConnectionEndedError as error:
        logger.debug("connection from %s ended: %s", peer, error)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
        logger.debug("connection from %s lost: %r", peer, error)


def _peer_name(stream: TlsStream) -> str:
    try:
        host, port = stream.transport_stream.socket.getpeername()[:2]
    except OSError:
        return "an unknown peer"
    return f"{host}:{port}"


class _Connection:
    def __init__(
        self,
        stream: TlsStream,
        routes: Sequence[Route],
        idle_timeout_s: float,
        peer: str,
    ) -> None:
        self._peer = peer
        self._stream = stream
        self._routes = routes
        self._idle_timeout_s = idle_timeout_s
        self._h11 = h11.Connection(h11.SERVER)

    async def run(self) -> None:
        await self._handshake()
        while await self._serve_one_request():
            self._h11.start_next_cycle()

    async def _handshake(self) -> None:
        with trio.move_on_after(self._idle_timeout_s):
            try:
                await self._stream.do_handshake()
            except trio.BrokenResourceError as error:
                cause = error.__cause__ or error
                logger.info("TLS handshake with %s failed: %r", self._peer, cause)
                raise ConnectionEndedError("TLS handshake failed") from error
            return
        raise ConnectionEndedError("TLS handshake timed out")

    async def _serve_one_request(self) -> bool:
        request = await self._read_request()
        if request is None:
            return False
        await self._dispatch(request)
        our_state, their_state = self._h11.our_state, self._h11.their_state
        return our_state is h11.DONE and their_state is h11.DONE

    async def _read_request(self) -> Request | None:
        try:
            return await self._receive_request()
        except h11.RemoteProtocolError as error:
            await self._reject(error)
            return None

    async def _receive_request(self) -> Request | None:
        event = await self._next_event()
        if not isinstance(event, h11.Request):
            return None
        body = await self._receive_body()
        return _build_request(event, body)

    async def _receive_body(self) -> bytes:
        if self._h11.they_are_waiting_for_100_continue:
            continue_response = h11.InformationalResponse(status_code=100, headers=[])
            await self._stream.send_all(self._h11.send(continue_response) or b"")
        body = bytearray()
        while isinstance(event := await self._next_event(), h11.Data):
            body += event.data
            _check_body_size(len(body))
        return bytes(body)

    async def _next_event(self) -> _Incoming:
        while (event := self._h11.next_event()) is h11.NEED_DATA:
            await self._receive_data()
        return event

    async def _receive_data(self) -> None:
        with trio.move_on_after(self._idle_timeout_s):
            data = await self._stream.receive_some(RECEIVE_SIZE)
            self._h11.receive_data(bytes(data))
            return
        raise ConnectionEndedError(f"idle for {self._idle_timeout_s} s")

    async def _dispatch(self, request: Request) -> None:
        logger.debug("%s requested %s %s", self._peer, request.method, request.target)
        exchange = Exchange(self._stream, self._h11, request.method)
        handler = find_handler(self._routes, request)
        try:
            await handler(request, exchange)
        except (
            ConnectionEndedError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ):
            raise
        except Exception:
            logger.exception(
                "handler for %s %s from %s failed",
                request.method,
                request.path,
                self._peer,
            )
            await self._fail(exchange)

    async def _fail(self, exchange: Exchange) -> None:
        if self._h11.our_state is not h11.SEND_RESPONSE:
            raise ConnectionEndedError("handler failed after sending its head")
        await respond_text(exchange, 500, "500 Internal Server Error\n")

    async def _reject(self, error: h11.RemoteProtocolError) -> None:
        logger.info("rejecting invalid request from %s: %s", self._peer, error)
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = error.error_status_hint
        text = f"{status} {reason_phrase(status)}: {error}\n"
        exchange = Exchange(self._stream, self._h11, "GET")
        await respond_text(exchange, status, text, [("Connection", "close")])


def _check_body_size(size: int) -> None:
    if size > MAX_REQUEST_BODY_BYTES:
        raise h11.RemoteProtocolError(
            f"request body exceeds {MAX_REQUEST_BODY_BYTES} bytes",
            error_status_hint=413,
        )


def _build_request(event: h11.Request, body: bytes) -> Request:
    target = event.target.decode("ascii")
    parts = urlsplit(target)
    return Request(
        method=event.method.decode("ascii"),
        target=target,
        path=parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=_join_headers(event.headers),
        body=body,
    )


def _join_headers(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    # h11 lowercases header names. Repeated fields are joined with ", " as
    # RFC 9110 allows for list-valued fields.
    joined: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("ascii"), raw_value.decode("latin-1")
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined

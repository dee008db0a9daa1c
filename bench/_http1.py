"""A minimal HTTP/1.1 client on trio and h11 that controls its socket reads.

The load generator needs what httpx does not offer: a receive buffer size set
before connecting, and reads no larger than the caller allows, so that a
slow listener pushes back on the server like a real player.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import h11
import trio

__all__ = ["Response", "open_get"]

_HEADER_READ_BYTES = 16 * 1024


@dataclass
class Response:
    """A response whose head has arrived and whose body is read in pieces."""

    status: int
    stream: trio.abc.Stream
    connection: h11.Connection
    complete: bool = False

    async def read_body(self, max_bytes: int) -> bytes:
        """Return up to about ``max_bytes`` of body, or b"" at its end."""
        while not self.complete:
            event = self.connection.next_event()
            if event is h11.NEED_DATA:
                raw = await self.stream.receive_some(max_bytes)
                self.connection.receive_data(bytes(raw))
                continue
            if isinstance(event, h11.Data):
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self.complete = True
        return b""

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def open_get(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    receive_buffer_bytes: int | None = None,
    max_segment_bytes: int | None = None,
) -> Response:
    """Connect, send a GET for ``url`` and return once the head has arrived."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    stream: trio.abc.Stream = await _connect(
        host, port, receive_buffer_bytes, max_segment_bytes
    )
    if parts.scheme == "https":
        context = ssl_context or ssl.create_default_context()
        stream = trio.SSLStream(stream, context, server_hostname=host)
    try:
        return await _request(stream, parts, host, port, headers or {})
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _connect(
    host: str,
    port: int,
    receive_buffer_bytes: int | None,
    max_segment_bytes: int | None,
) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer_bytes is not None:
        # Set before connect, so the window scale the handshake offers fits.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
    if max_segment_bytes is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, max_segment_bytes)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _request(
    stream: trio.abc.Stream,
    parts: SplitResult,
    host: str,
    port: int,
    headers: dict[str, str],
) -> Response:
    target = _target(parts)
    connection = h11.Connection(h11.CLIENT)
    fields = [("Host", f"{host}:{port}"), *headers.items()]
    request = h11.Request(method="GET", target=target, headers=fields)
    await stream.send_all(
        connection.send(request) + connection.send(h11.EndOfMessage())
    )
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            raw = await stream.receive_some(_HEADER_READ_BYTES)
            if not raw:
                raise ConnectionError(
                    f"connection closed before a response to {target}"
                )
            connection.receive_data(bytes(raw))
            continue
        if isinstance(event, h11.Response):
            return Response(event.status_code, stream, connection)
        raise ConnectionError(f"unexpected {type(event).__name__} before the response")


def _target(parts: SplitResult) -> str:
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path

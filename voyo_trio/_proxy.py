"""The media proxy: upstream bytes to the listener through a bounded buffer.

Each stream is a pump task in the app-owned stream nursery that copies the
upstream body into a memory channel, and a :class:`StreamBody` that the
response iterates. The channel queues ``stream_buffer_chunks`` chunks (none
by default, so the pump waits until the body takes its chunk). A slow
listener stops the pump reading upstream and gets small chunks, so a stream
keeps only a few chunks in memory. Closing the body (the listener went away)
cancels the pump, which closes the upstream response.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import AsyncGenerator, Callable, MutableMapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

import httpx
import trio

from ._errors import (
    UpstreamError,
    UpstreamRefused,
    UpstreamStatusError,
    UpstreamTimeout,
)
from ._resolver import Resolved
from ._settings import Settings
from ._upstream import UpstreamClient

__all__ = [
    "StreamAborted",
    "StreamBody",
    "StreamSupervisor",
    "fetch_media",
    "has_small_body",
    "read_small_body",
]

logger = logging.getLogger(__name__)

# The only upstream headers passed on to a listener. Everything else (cookies, server
# names, CDN internals) stays behind the proxy.
_PASSED_HEADERS = ("content-type", "content-length", "content-range", "accept-ranges")
_PASSED_STATUSES = frozenset({200, 206, 416})
# RFC 9110 section 14.2: a server may ignore a Range, so anything but one
# range is dropped and the full representation is fetched. Several ranges
# would come back as multipart/byteranges, which players do not read.
# The unit is case-insensitive (section 14.1) and is sent on in lower case.
_RANGE = re.compile(r"bytes=\d{0,18}-\d{0,18}", re.IGNORECASE)
_MAX_RANGE_LENGTH = 256
# A send that waits longer than this marks a listener that reads at its
# playback rate, and such a listener gets 16 KiB chunks, one TLS record each.
_SLOW_SEND_S = 0.05
_SMALL_CHUNK_BYTES = 16 * 1024
# A piece that arrives this long after the one before it, or after the oldest
# waiting piece, sends what is waiting at once, so a slow upstream is not
# held back to fill a chunk.
_MAX_JOIN_WAIT_S = 0.05
# A body up to this size is read whole and sent as one piece without a pump,
# as for a player's probe of the first bytes.
_SMALL_BODY_BYTES = _SMALL_CHUNK_BYTES
# The ASGI scope key under which a request's open stream bodies are kept.
SCOPE_BODIES = "voyo_trio.stream_bodies"


class StreamAborted(Exception):
    """The upstream failed after the response started.

    The listener's connection is closed without ending the body, so the
    player gets a short read instead of a track that looks complete.
    """


def clean_range(value: str | None) -> str | None:
    """Return ``value`` if it is a well-formed byte range, else None."""
    if value is None or len(value) > _MAX_RANGE_LENGTH:
        return None
    value = value.strip()
    if not _RANGE.fullmatch(value):
        return None
    return "bytes=" + value[len("bytes=") :]


async def fetch_media(
    upstream: UpstreamClient, resolved: Resolved, range_header: str | None
) -> httpx.Response:
    """Open the media URL of ``resolved``, returning a response body unread.

    Raises UpstreamRefused on 403/410, so the caller can resolve again, and
    UpstreamStatusError on any other status but 200, 206 and 416.
    """
    headers = _media_request_headers(resolved, range_header)
    response = await upstream.open_stream(
        resolved.url, headers=headers, what=f"track {resolved.video_id}"
    )
    status = response.status_code
    encoding = response.headers.get("content-encoding", "identity").lower()
    if status in _PASSED_STATUSES and encoding == "identity":
        return response
    await response.aclose()
    if status in _PASSED_STATUSES:
        # Byte ranges of a compressed body do not address the media file.
        raise UpstreamError(
            f"media host sent track {resolved.video_id} with Content-Encoding "
            f"{encoding!r} although identity was requested"
        )
    if status in (403, 410):
        raise UpstreamRefused(
            f"media host rejected track {resolved.video_id} with {status}",
            upstream_status=status,
        )
    raise UpstreamStatusError(
        f"media host returned {status} for track {resolved.video_id}",
        upstream_status=status,
    )


def _media_request_headers(
    resolved: Resolved, range_header: str | None
) -> dict[str, str]:
    headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
    for name, value in resolved.http_headers:
        if name.lower() in {"user-agent", "accept-language"}:
            headers[name] = value
    if range_header is not None:
        headers["Range"] = range_header
    return headers


def has_small_body(upstream: httpx.Response) -> bool:
    """Tell whether the upstream body is short enough to read whole."""
    length = upstream.headers.get("content-length", "")
    return length.isdigit() and int(length) <= _SMALL_BODY_BYTES


async def read_small_body(upstream: httpx.Response, video_id: str) -> bytes:
    """Read a short upstream body as it came, then close the response."""
    # Raw bytes, as a stream passes them on, so Content-Length still matches.
    pieces = cast(AsyncGenerator[bytes, None], upstream.aiter_raw())
    try:
        async with aclosing(pieces):
            return b"".join([piece async for piece in pieces])
    except httpx.HTTPError as error:
        raise _read_error(video_id, error) from error
    finally:
        with trio.move_on_after(1, shield=True):
            await upstream.aclose()


def response_headers(upstream: httpx.Response) -> dict[str, str]:
    """Pick the headers a listener needs from the upstream response."""
    headers = {
        name: upstream.headers[name]
        for name in _PASSED_HEADERS
        if name in upstream.headers
    }
    headers.setdefault("content-type", "application/octet-stream")
    headers.setdefault("accept-ranges", "bytes")
    return headers


class _Joiner:
    """Pieces of the upstream body waiting to be joined into one chunk.

    A chunk is ready when the pieces reach the chunk size. It is also ready
    when a piece arrives ``_MAX_JOIN_WAIT_S`` or more after the one before it,
    or after the oldest waiting piece: the upstream is slow then, and what it
    sent goes on at once.

    NOTE: the wait is checked as pieces arrive, so pieces that arrive close
    together and are then followed by silence wait for the next piece or the
    end of the body.
    """

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self.pending_bytes = 0
        self._oldest_at = 0.0
        self._last_at = -math.inf
        self._slow = False

    def add(self, piece: bytes, now: float) -> None:
        if not self._pieces:
            self._oldest_at = now
        gap = now - self._last_at
        self._slow = (
            gap >= _MAX_JOIN_WAIT_S or now - self._oldest_at >= _MAX_JOIN_WAIT_S
        )
        self._last_at = now
        self._pieces.append(piece)
        self.pending_bytes += len(piece)

    def take(self, chunk_bytes: int) -> bytes | None:
        """Return the next chunk of at most ``chunk_bytes``, or None if not ready."""
        if self.pending_bytes >= chunk_bytes:
            return self._cut(chunk_bytes)
        if self._pieces and self._slow:
            return self.take_all()
        return None

    def take_all(self) -> bytes:
        chunk = b"".join(self._pieces)
        self._pieces.clear()
        self.pending_bytes = 0
        return chunk

    def _cut(self, chunk_bytes: int) -> bytes:
        # Split only the piece that crosses the boundary, so that the copy
        # beyond the join is at most one piece.
        parts: list[bytes] = []
        size = 0
        while size < chunk_bytes:
            piece = self._pieces.pop(0)
            room = chunk_bytes - size
            if len(piece) > room:
                self._pieces.insert(0, piece[room:])
                piece = piece[:room]
            parts.append(piece)
            size += len(piece)
        self.pending_bytes -= size
        # The rest starts a new chunk whose wait counts from the latest piece.
        self._oldest_at = self._last_at
        return b"".join(parts)


@dataclass
class _StreamState:
    video_id: str
    bytes_sent: int = 0
    failure: str | None = None
    # The error for a JSON response, when the upstream failed before any byte.
    error: UpstreamError | None = None


class StreamBody:
    """Async iterator over the chunks of one stream, fed by its pump task.

    ``aclose()`` (or :meth:`close`) may be called at any time, also before
    iteration starts, and stops the pump.
    """

    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[bytes],
        pump_scope: trio.CancelScope,
        state: _StreamState,
    ) -> None:
        self._receive = receive
        self._pump_scope = pump_scope
        self._state = state
        self._first: bytes | None = None

    def __aiter__(self) -> StreamBody:
        return self

    async def wait_for_first_chunk(self) -> None:
        """Wait until the first chunk is ready, so that the response can start.

        Raises the upstream's error when it failed before sending any byte, so
        that the listener gets a JSON error instead of an empty body.
        """
        try:
            self._first = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._state.error is not None:
                raise self._state.error from None

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            pass
        if self._state.failure is not None:
            raise StreamAborted(self._state.failure)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._pump_scope.cancel()
        self._receive.close()


class StreamSupervisor:
    """Own the nursery that runs every stream pump, and count live streams."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._nursery: trio.Nursery | None = None
        self.active = 0
        self.started_total = 0
        self.aborted_total = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the stream nursery until cancelled (``nursery.start`` protocol)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def start(
        self,
        upstream: httpx.Response,
        video_id: str,
        scope: MutableMapping[str, Any],
        on_close: Callable[[], None] | None = None,
    ) -> StreamBody:
        """Start pumping ``upstream`` and return the body for the response.

        The body is also recorded in the request's ASGI ``scope`` so that it is
        closed when the request ends, even if the response never iterates it.
        ``on_close`` runs once the pump has ended.
        """
        if self._nursery is None:
            raise RuntimeError("the stream supervisor is not running")
        send, receive = trio.open_memory_channel[bytes](
            self._settings.stream_buffer_chunks
        )
        pump_scope = trio.CancelScope()
        state = _StreamState(video_id)
        body = StreamBody(receive, pump_scope, state)
        scope.setdefault(SCOPE_BODIES, []).append(body)
        self.active += 1
        self.started_total += 1
        self._nursery.start_soon(
            self._pump, upstream, send, pump_scope, state, on_close
        )
        return body

    async def _pump(
        self,
        upstream: httpx.Response,
        send: trio.MemorySendChannel[bytes],
        pump_scope: trio.CancelScope,
        state: _StreamState,
        on_close: Callable[[], None] | None,
    ) -> None:
        try:
            with pump_scope, send:
                await self._copy(upstream, send, state)
        finally:
            # Release the upstream connection even while cancelled; a close
            # that hangs is abandoned after a second.
            with trio.move_on_after(1, shield=True):
                await upstream.aclose()
            self.active -= 1
            if on_close is not None:
                on_close()
            logger.debug(
                "stream.closed video_id=%s bytes=%d", state.video_id, state.bytes_sent
            )

    async def _copy(
        self,
        upstream: httpx.Response,
        send: trio.MemorySendChannel[bytes],
        state: _StreamState,
    ) -> None:
        # httpx types aiter_raw() as an iterator; it is an async generator.
        # Without a chunk size it yields pieces as they arrive (at most one TLS
        # record of 16 KiB each), which are joined here into chunks.
        pieces = cast(AsyncGenerator[bytes, None], upstream.aiter_raw())
        # The first chunk is small, so playback starts before a full chunk
        # has crossed a slow network.
        chunk_bytes = min(_SMALL_CHUNK_BYTES, self._settings.stream_chunk_bytes)
        joiner = _Joiner()
        try:
            # aclosing() finalizes httpx's generator at once, also when cancelled.
            async with aclosing(pieces):
                async for piece in pieces:
                    joiner.add(piece, trio.current_time())
                    while (chunk := joiner.take(chunk_bytes)) is not None:
                        chunk_bytes = await self._send_chunk(send, chunk, state)
            if joiner.pending_bytes:
                await self._send_chunk(send, joiner.take_all(), state)
        except trio.BrokenResourceError:
            logger.debug("listener left video_id=%s", state.video_id)
        except (httpx.HTTPError, UpstreamError) as error:
            if joiner.pending_bytes and state.bytes_sent:
                # Valid bytes the upstream sent before it failed still go out.
                with contextlib.suppress(trio.BrokenResourceError):
                    await self._send_chunk(send, joiner.take_all(), state)
            self._fail(state, f"upstream read failed: {type(error).__name__}")
            if state.bytes_sent == 0:
                state.error = _read_error(state.video_id, error)

    async def _send_chunk(
        self, send: trio.MemorySendChannel[bytes], chunk: bytes, state: _StreamState
    ) -> int:
        """Hand ``chunk`` to the body and return the size of the next chunk.

        A listener that was already waiting gets full-size chunks, which cost
        less per byte. One that kept the pump waiting reads at its playback
        rate, so it gets small chunks and keeps less memory while it waits.
        """
        try:
            send.send_nowait(chunk)
        except trio.WouldBlock:
            pass
        else:
            state.bytes_sent += len(chunk)
            return self._settings.stream_chunk_bytes
        started = trio.current_time()
        with trio.move_on_after(self._settings.stream_idle_timeout_s):
            await send.send(chunk)
            state.bytes_sent += len(chunk)
            if trio.current_time() - started < _SLOW_SEND_S:
                return self._settings.stream_chunk_bytes
            return min(_SMALL_CHUNK_BYTES, self._settings.stream_chunk_bytes)
        self._fail(state, "listener read nothing for too long")
        raise trio.BrokenResourceError

    def _fail(self, state: _StreamState, reason: str) -> None:
        self.aborted_total += 1
        state.failure = reason
        logger.warning(
            "stream aborted video_id=%s after %d bytes: %s",
            state.video_id,
            state.bytes_sent,
            reason,
        )


def _read_error(video_id: str, error: Exception) -> UpstreamError:
    """Convert a failed read of a media body into the error a listener gets."""
    if isinstance(error, UpstreamError):
        return error
    if isinstance(error, httpx.TimeoutException):
        return UpstreamTimeout(
            f"reading track {video_id} from the media host timed out"
        )
    return UpstreamError(
        f"reading track {video_id} from the media host failed: {type(error).__name__}"
    )


def close_request_streams(scope: MutableMapping[str, Any]) -> None:
    """Close every stream body that a request opened."""
    for body in scope.pop(SCOPE_BODIES, ()):
        body.close()

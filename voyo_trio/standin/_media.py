"""Media host: signed, expiring, revocable WAV URLs with byte ranges and faults."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlencode

import trio

from ._audio import QUALITIES, render_wav
from ._catalog import Catalog
from ._faults import PACE_PIECE_BYTES, Fault, FaultTable
from ._http import Exchange, Headers, Request, respond_text
from ._ranges import ByteRange, RangeNotSatisfiableError, parse_range
from ._signing import UrlSigner
from ._stats import StandInStats

logger = logging.getLogger(__name__)

MEDIA_PREFIX = "/media/"
BODY_CHUNK_SIZE = 64 * 1024

# Headers a real CDN sends that a proxy must not pass on to its clients.
CDN_HEADERS: Headers = (
    ("Server", "standin-media"),
    ("X-Upstream-Secret", "standin"),
    ("Set-Cookie", "s=1"),
)


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Headers
    body: bytes
    is_audio: bool = False


class MediaHost:
    """State and request handler of the media host: signing, revocation, faults."""

    def __init__(
        self, stats: StandInStats, url_ttl_s: float, catalog: Catalog | None = None
    ) -> None:
        self._stats = stats
        self._catalog = Catalog() if catalog is None else catalog
        self._url_ttl_s = url_ttl_s
        self._signer = UrlSigner()
        self._faults = FaultTable()
        self._generations: Counter[str] = Counter()
        # When true, bodies are sent gzip-compressed whatever Accept-Encoding
        # the request sent, as from a misconfigured host.
        self.gzip_bodies = False

    def media_url(self, base_url: str, video_id: str, quality: str) -> str:
        """Return a newly signed URL of a track's file that expires after the TTL."""
        self._catalog.require(video_id)
        expire = str(int(time.time() + self._url_ttl_s))
        generation = str(self._generations[video_id])
        signature = self._signer.sign(video_id, quality, expire, generation)
        query = urlencode({"expire": expire, "gen": generation, "sig": signature})
        return f"{base_url}{MEDIA_PREFIX}{video_id}/{quality}.wav?{query}"

    def revoke(self, video_id: str) -> None:
        """Make every URL issued so far for the track get 403 responses."""
        self._catalog.require(video_id)
        self._generations[video_id] += 1
        logger.info(
            "revoked media URLs of %s before generation %d",
            video_id,
            self._generations[video_id],
        )

    def set_fault(self, video_id: str, fault: Fault | None) -> None:
        """Apply a fault to the track's next media requests, or clear it."""
        self._catalog.require(video_id)
        self._faults.set(video_id, fault)
        logger.info("fault for %s set to %r", video_id, fault)

    async def handle(self, request: Request, exchange: Exchange) -> None:
        """Serve ``GET|HEAD /media/ID/QUALITY.wav?expire=&gen=&sig=``."""
        target = _parse_media_path(request.path, self._catalog)
        if target is None:
            await _respond_media_text(exchange, 404, f"no media at {request.path}")
            return
        video_id, quality = target
        self._stats.media_requests[video_id] += 1
        self._stats.last_media_headers = dict(request.headers)
        fault = self._faults.take(video_id)
        await _apply_fault_before_head(fault, exchange)
        reply = self._build_reply(video_id, quality, request, fault)
        await self._send_reply(exchange, reply, fault)

    def _build_reply(
        self, video_id: str, quality: str, request: Request, fault: Fault | None
    ) -> _Reply:
        if fault is not None and fault.status is not None:
            reply = _text_reply(fault.status, f"fault injected for {video_id}")
            if fault.location is None:
                return reply
            location = ("Location", fault.location)
            return dataclasses.replace(reply, headers=[*reply.headers, location])
        denial = self._find_denial(video_id, quality, request)
        if denial is not None:
            logger.info("media request for %s/%s denied: %s", video_id, quality, denial)
            return _text_reply(403, denial)
        audio = render_wav(self._catalog.require(video_id), quality)
        reply = _audio_reply(audio, request)
        return gzip_reply(reply) if self.gzip_bodies else reply

    def _find_denial(self, video_id: str, quality: str, request: Request) -> str | None:
        fields = [request.query_value(name) for name in ("expire", "gen", "sig")]
        expire, generation, signature = fields
        if expire is None or generation is None or signature is None:
            return "URL is missing its expire, gen or sig parameter"
        if not self._signer.verify(video_id, quality, expire, generation, signature):
            return f"signature {signature!r} does not match the URL"
        return self._find_stale_field(video_id, int(expire), int(generation))

    def _find_stale_field(
        self, video_id: str, expire: int, generation: int
    ) -> str | None:
        if expire < time.time():
            return f"URL expired at {expire} (Unix time)"
        current = self._generations[video_id]
        if generation < current:
            return f"URL generation {generation} is revoked, current is {current}"
        return None

    async def _send_reply(
        self, exchange: Exchange, reply: _Reply, fault: Fault | None
    ) -> None:
        await exchange.send_head(reply.status, reply.headers)
        limit = _body_limit(fault)
        pace = None if fault is None else fault.pace_bytes_per_s
        await self._send_body(exchange, reply, limit, pace)
        if fault is not None and fault.reset_after_bytes is not None:
            await exchange.reset()
        if fault is not None and fault.stall_after_bytes is not None:
            await exchange.stall()
        await exchange.finish()

    async def _send_body(
        self,
        exchange: Exchange,
        reply: _Reply,
        limit: int | None,
        pace_bytes_per_s: float | None,
    ) -> None:
        # Chunked sends let a slow reader push back through TLS and TCP.
        end = len(reply.body) if limit is None else min(limit, len(reply.body))
        step = BODY_CHUNK_SIZE if pace_bytes_per_s is None else PACE_PIECE_BYTES
        for offset in range(0, end, step):
            chunk = reply.body[offset : min(offset + step, end)]
            sent = await exchange.send_body(chunk)
            if reply.is_audio:
                self._stats.media_bytes_sent += sent
            if pace_bytes_per_s is not None:
                await trio.sleep(len(chunk) / pace_bytes_per_s)


def _parse_media_path(path: str, catalog: Catalog) -> tuple[str, str] | None:
    parts = path.removeprefix(MEDIA_PREFIX).split("/")
    if len(parts) != 2 or not parts[1].endswith(".wav"):
        return None
    video_id, quality = parts[0], parts[1].removesuffix(".wav")
    if catalog.find(video_id) is None or quality not in QUALITIES:
        return None
    return video_id, quality


async def _apply_fault_before_head(fault: Fault | None, exchange: Exchange) -> None:
    if fault is None:
        return
    if fault.delay_s > 0:
        await trio.sleep(fault.delay_s)
    if fault.reset_before_headers:
        await exchange.reset()


def _body_limit(fault: Fault | None) -> int | None:
    if fault is None:
        return None
    if fault.reset_after_bytes is not None:
        return fault.reset_after_bytes
    return fault.stall_after_bytes


async def _respond_media_text(exchange: Exchange, status: int, text: str) -> None:
    await respond_text(exchange, status, f"{status} {text}\n", CDN_HEADERS)


def gzip_reply(reply: _Reply) -> _Reply:
    """Return ``reply`` with its body gzip-compressed and headers to match."""
    body = gzip.compress(reply.body)
    other_headers = [
        (name, value)
        for name, value in reply.headers
        if name.lower() not in ("content-length", "content-encoding")
    ]
    headers = [
        *other_headers,
        ("Content-Encoding", "gzip"),
        ("Content-Length", str(len(body))),
    ]
    return dataclasses.replace(reply, headers=headers, body=body)


def _text_reply(status: int, text: str) -> _Reply:
    body = f"{status} {text}\n".encode()
    headers = [*CDN_HEADERS, ("Content-Type", "text/plain; charset=utf-8")]
    return _Reply(status, [*headers, ("Content-Length", str(len(body)))], body)


def _audio_reply(audio: bytes, request: Request) -> _Reply:
    size = len(audio)
    try:
        byte_range = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiableError as error:
        logger.debug(
            "range %r not satisfiable: %s", request.headers.get("range"), error
        )
        return _unsatisfiable_reply(size)
    if byte_range is None:
        return _Reply(200, _audio_headers(size), audio, is_audio=True)
    return _partial_reply(audio, byte_range)


def _partial_reply(audio: bytes, byte_range: ByteRange) -> _Reply:
    headers = [
        *_audio_headers(byte_range.length),
        ("Content-Range", byte_range.content_range(len(audio))),
    ]
    body = audio[byte_range.first : byte_range.last + 1]
    return _Reply(206, headers, body, is_audio=True)


def _unsatisfiable_reply(size: int) -> _Reply:
    reply = _text_reply(416, "range not satisfiable")
    return _Reply(
        416, [*reply.headers, ("Content-Range", f"bytes */{size}")], reply.body
    )


def _audio_headers(length: int) -> Headers:
    return [
        *CDN_HEADERS,
        ("Content-Type", "audio/wav"),
        ("Accept-Ranges", "bytes"),
        ("Content-Length", str(length)),
    ]

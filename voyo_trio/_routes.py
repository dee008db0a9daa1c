"""HTTP routes of the streaming API, compatible with the Node server's."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlencode

import httpx
import psutil
import trio
from quart import Blueprint, Response, g, request

from ._cache import TTLCache
from ._errors import RateLimited, UpstreamRefused, VoyoError
from ._ids import parse_track_ref, parse_video_id
from ._library import StoredTrack
from ._library_routes import library_url
from ._proxy import (
    clean_range,
    fetch_media,
    has_small_body,
    read_small_body,
    response_headers,
)
from ._request_limits import extraction_charge, request_client
from ._resolver import Kind, ResolveKey, parse_kind, parse_quality
from ._responses import base_url, error_response
from ._services import Services, current_services
from ._threads import thread_counts

__all__ = ["blueprint"]

logger = logging.getLogger(__name__)

blueprint = Blueprint("voyo", __name__)


def _key(video_id: str) -> ResolveKey:
    g.video_id = video_id
    args = request.args
    return video_id, parse_kind(args.get("type")), parse_quality(args.get("quality"))


def _proxy_url(key: ResolveKey) -> str:
    video_id, kind, quality = key
    query = urlencode({"v": video_id, "quality": quality.value, "type": kind.value})
    return f"{base_url()}/proxy?{query}"


@blueprint.get("/stream")
async def stream() -> dict[str, Any]:
    voyo = current_services()
    key = _key(parse_video_id(request.args.get("v")))
    stored = await _stored_track(voyo, key)
    if stored is not None:
        return _library_stream_json(key, stored)
    resolved, cached = await voyo.resolver.resolve(
        key, voyo.nursery, extraction_charge(voyo)
    )
    _maybe_boost(voyo, key[0])
    url = _proxy_url(key)
    return {
        "url": url,
        "audioUrl": url,
        "videoId": resolved.video_id,
        "type": resolved.kind.value,
        "quality": resolved.quality.value,
        "cached": cached,
        "source": "voyo_proxy",
        "title": resolved.title,
        "artist": resolved.artist,
        "duration": resolved.duration_s,
        "format": {
            "id": resolved.format_id,
            "ext": resolved.ext,
            "bitrateKbps": resolved.bitrate_kbps,
        },
        "expiresAt": resolved.expires_at,
    }


async def _stored_track(voyo: Services, key: ResolveKey) -> StoredTrack | None:
    if key[1] is not Kind.AUDIO:
        return None
    return await trio.to_thread.run_sync(voyo.library.find, key[0])


def _library_stream_json(key: ResolveKey, stored: StoredTrack) -> dict[str, Any]:
    url = library_url(base_url(), stored)
    return {
        "url": url,
        "audioUrl": url,
        "videoId": key[0],
        "type": key[1].value,
        "quality": key[2].value,
        "cached": True,
        "source": "voyo_cache",
        "contentLength": stored.size_bytes,
        "title": stored.title,
        "artist": stored.artist,
        "format": {"id": "library", "ext": stored.ext, "bitrateKbps": None},
    }


def _maybe_boost(voyo: Services, video_id: str) -> None:
    """Start a background download so the next play comes from disk.

    Call it only once the track has resolved, so an unknown id starts
    nothing. A track is boosted once an hour at most. The download runs
    yt-dlp, so it is charged to the global extraction budget, and skipped
    when that runs low. A job for a track already stored runs no yt-dlp.
    """
    downloads = voyo.downloads
    if not voyo.settings.boost_downloads or downloads.running(video_id) is not None:
        return
    if voyo.boosted.get(video_id) is not None:
        return
    if len(downloads.jobs) >= voyo.settings.boost_max_pending:
        logger.debug("boost skipped video_id=%s: enough downloads running", video_id)
        return
    if not voyo.limiter.take_global_extraction():
        logger.debug("boost skipped video_id=%s: extraction budget low", video_id)
        return
    voyo.boosted.set(video_id, True)
    downloads.start(video_id, voyo.nursery)


@blueprint.get("/proxy")
async def proxy() -> Response:
    return await _proxy_response(_key(parse_video_id(request.args.get("v"))))


@blueprint.get("/cdn/stream/<track>")
async def cdn_stream(track: str) -> Response:
    return await _proxy_response(_key(parse_track_ref(track)))


async def _proxy_response(key: ResolveKey) -> Response:
    voyo = current_services()
    release = _claim_stream_slot(voyo)
    try:
        upstream = await _open_media(
            voyo, key, clean_range(request.headers.get("Range"))
        )
    except BaseException:
        release()
        raise
    if upstream.status_code == 416:
        release()
        return await _range_not_satisfiable(upstream, key[0])
    if has_small_body(upstream):
        try:
            content = await read_small_body(upstream, key[0])
        finally:
            release()
        if request.method != "HEAD":
            _maybe_boost(voyo, key[0])
        return Response(
            content, status=upstream.status_code, headers=response_headers(upstream)
        )
    try:
        headers = response_headers(upstream)
        scope = cast(dict[str, Any], request.scope)
        body = voyo.streams.start(upstream, key[0], scope, on_close=release)
    except BaseException:
        release()
        with trio.CancelScope(shield=True):
            await upstream.aclose()
        raise
    try:
        await body.wait_for_first_chunk()
    except BaseException:
        # Closing stops the pump, whose end releases the stream slot.
        body.close()
        raise
    if request.method != "HEAD":
        _maybe_boost(voyo, key[0])
    response = Response(body, status=upstream.status_code, headers=headers)
    response.timeout = None
    return response


def _claim_stream_slot(voyo: Services) -> Callable[[], None]:
    """Count one more open stream for this client, or raise RateLimited.

    Returns the function that gives the slot back; it is safe to call twice.
    """
    cap = voyo.settings.max_streams_per_client
    client = request_client()
    if cap and voyo.client_streams[client] >= cap:
        raise RateLimited(
            f"too many open streams: at most {cap} per client; close one and retry",
            retry_after_s=1,
            reason="streams",
        )
    voyo.client_streams[client] += 1
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            voyo.client_streams[client] -= 1
            if voyo.client_streams[client] <= 0:
                del voyo.client_streams[client]

    return release


async def _range_not_satisfiable(upstream: httpx.Response, video_id: str) -> Response:
    """Return a JSON 416 response with the ``Content-Range: bytes */SIZE`` header."""
    await upstream.aclose()
    response = error_response(
        f"requested range is past the end of track {video_id}", 416
    )
    if "content-range" in upstream.headers:
        response.headers["Content-Range"] = upstream.headers["content-range"]
    return response


async def _open_media(voyo: Services, key: ResolveKey, range_header: str | None) -> Any:
    """Open the upstream media, resolving once more if its URL was refused.

    googlevideo returns 403 or 410 once a URL expired or was revoked. Nothing
    has been sent to the listener yet, so one fresh resolution is safe.
    """
    charge = extraction_charge(voyo)
    for attempt in (1, 2):
        resolved, _ = await voyo.resolver.resolve(key, voyo.nursery, charge)
        try:
            return await fetch_media(voyo.upstream, resolved, range_header)
        except UpstreamRefused as error:
            voyo.resolver.invalidate(key)
            if attempt == 2:
                raise
            logger.info(
                "media URL refused with %d video_id=%s; resolving again",
                error.upstream_status,
                key[0],
            )
    raise AssertionError("unreachable")


@blueprint.get("/prefetch")
async def prefetch() -> tuple[dict[str, Any], int]:
    voyo = current_services()
    key = _key(parse_video_id(request.args.get("v")))
    body = {"status": "warming", "videoId": key[0]}
    if voyo.resolver.cached(key) is not None or voyo.resolver.in_flight(key):
        return {**body, "status": "warm", "message": "stream is already resolved"}, 202
    if voyo.prefetched.get(key) is not None:
        return {**body, "message": "prefetch already requested"}, 202
    if voyo.prefetch_pending >= voyo.settings.prefetch_max_pending:
        raise _PrefetchBusy(
            f"too many prefetches pending ({voyo.prefetch_pending}); try again later"
        )
    extraction_charge(voyo)()
    voyo.prefetched.set(key, True)
    voyo.prefetch_pending += 1
    voyo.nursery.start_soon(_warm, voyo, key)
    return {**body, "message": "resolving the stream in the background"}, 202


class _PrefetchBusy(VoyoError):
    status = 503
    expected = True
    retry_after_s = 5.0


async def _warm(voyo: Services, key: ResolveKey) -> None:
    """Resolve ``key`` and open a pooled connection to its media host."""
    try:
        resolved, _ = await voyo.resolver.resolve(key, voyo.nursery)
        upstream = await fetch_media(voyo.upstream, resolved, "bytes=0-0")
        try:
            # A fully read body returns the connection to the pool; a host
            # that ignored the range is not read, and its connection closes.
            if upstream.status_code == 206:
                await upstream.aread()
        finally:
            await upstream.aclose()
        logger.info("prefetched video_id=%s type=%s quality=%s", *key)
    except VoyoError as error:
        voyo.prefetched.discard(key)
        logger.warning("prefetch failed video_id=%s: %s", key[0], error)
    finally:
        voyo.prefetch_pending -= 1


@blueprint.get("/health")
async def health() -> dict[str, Any]:
    voyo = current_services()
    resolver = voyo.resolver
    pool = voyo.upstream.pool_state()
    tracks = await trio.to_thread.run_sync(voyo.library.tracks)
    return {
        "status": "ok",
        "uptime": round(_uptime_s(voyo), 3),
        "memory": {"rss": psutil.Process().memory_info().rss},
        "caches": {
            "streams": _cache_json(resolver.cache),
            "search": _cache_json(voyo.searcher.cache),
            "thumbnails": {
                **_cache_json(voyo.thumbnails.cache),
                "bytes": voyo.thumbnails.cache.total_bytes,
                "maxBytes": voyo.settings.thumbnail_cache_bytes,
                "upstreamFetches": voyo.thumbnails.upstream_fetches,
            },
            "prefetch": {
                "size": len(voyo.prefetched),
                "pending": voyo.prefetch_pending,
            },
        },
        "library": {
            "tracks": len(tracks),
            "bytes": sum(track.size_bytes for track in tracks),
            "maxBytes": voyo.settings.library_max_bytes,
            "downloading": len(voyo.downloads.jobs),
            "completed": voyo.downloads.completed,
            "failed": voyo.downloads.failed,
        },
        "streams": {
            "active": voyo.streams.active,
            "started": voyo.streams.started_total,
            "aborted": voyo.streams.aborted_total,
        },
        "extraction": {
            "limit": voyo.settings.extract_concurrency,
            "running": resolver.limiter.borrowed_tokens,
            "total": resolver.stats.extractions,
            "failures": resolver.stats.failures,
            "timeouts": resolver.stats.timeouts,
        },
        "workerThreads": dataclasses.asdict(thread_counts()),
        "rateLimit": dataclasses.asdict(voyo.limiter.state()),
        "pool": {
            "connections": pool.connections,
            "idle": pool.idle,
            "active": pool.active,
        },
    }


def _cache_json(cache: TTLCache[Any, Any]) -> dict[str, Any]:
    stats = cache.stats
    return {
        "size": len(cache),
        "hits": stats.hits,
        "misses": stats.misses,
        "hitRate": round(stats.hit_rate, 4),
        "evictions": stats.evictions,
    }


def _uptime_s(voyo: Services) -> float:
    return time.monotonic() - voyo.started_at

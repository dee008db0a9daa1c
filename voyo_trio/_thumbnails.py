"""Cover art proxied from the thumbnail host, through a bounded cache.

The cache keeps at most ``thumbnail_cache_entries`` images and
``thumbnail_cache_bytes`` bytes, least recently used evicted first, and
concurrent misses for one image share one upstream fetch.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from dataclasses import dataclass
from typing import TypeAlias

import httpx
import trio

from ._cache import TTLCache
from ._errors import InvalidInput, NotFound, UpstreamError, UpstreamStatusError
from ._settings import Settings
from ._singleflight import SingleFlight
from ._upstream import UpstreamClient

__all__ = ["Thumbnail", "ThumbnailQuality", "Thumbnails", "parse_thumbnail_quality"]

logger = logging.getLogger(__name__)


class ThumbnailQuality(enum.StrEnum):
    MAX = "max"
    HIGH = "high"
    MEDIUM = "medium"
    DEFAULT = "default"


# YouTube's image names, largest first. A request starts at its quality and
# falls back to the next smaller one when the host returns 404, because many
# videos have no ``maxresdefault`` or ``sddefault``.
_NAMES = ("maxresdefault", "sddefault", "hqdefault", "mqdefault", "default")
_FIRST = {
    ThumbnailQuality.MAX: "maxresdefault",
    ThumbnailQuality.HIGH: "hqdefault",
    ThumbnailQuality.MEDIUM: "mqdefault",
    ThumbnailQuality.DEFAULT: "default",
}


def parse_thumbnail_quality(raw: str | None) -> ThumbnailQuality:
    if raw is None or raw == "":
        return ThumbnailQuality.HIGH
    try:
        return ThumbnailQuality(raw)
    except ValueError:
        allowed = ", ".join(quality.value for quality in ThumbnailQuality)
        raise InvalidInput(f"invalid 'quality': expected one of {allowed}") from None


def fallback_names(quality: ThumbnailQuality) -> tuple[str, ...]:
    """Return the image names to try for ``quality``, in order."""
    return _NAMES[_NAMES.index(_FIRST[quality]) :]


@dataclass(frozen=True)
class Thumbnail:
    """One cached image and the name of the size that the host had."""

    content: bytes
    content_type: str
    etag: str
    name: str


ThumbnailKey: TypeAlias = tuple[str, ThumbnailQuality]


class Thumbnails:
    """Fetch and cache cover art per (track id, quality)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.cache: TTLCache[ThumbnailKey, Thumbnail] = TTLCache(
            max_entries=settings.thumbnail_cache_entries,
            max_bytes=settings.thumbnail_cache_bytes,
            default_ttl_s=settings.thumbnail_cache_ttl_s,
        )
        self.upstream_fetches = 0
        self._flights: SingleFlight[ThumbnailKey, Thumbnail] = SingleFlight()
        self._host = httpx.URL(settings.thumbnail_base_url).host

    async def get(
        self,
        upstream: UpstreamClient,
        video_id: str,
        quality: ThumbnailQuality,
        nursery: trio.Nursery,
    ) -> Thumbnail:
        """Return the image for ``video_id``, from the cache or the host."""
        key = (video_id, quality)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        image, _ = await self._flights.run(
            key, lambda: self._fetch_first(upstream, video_id, quality), nursery
        )
        return image

    async def _fetch_first(
        self, upstream: UpstreamClient, video_id: str, quality: ThumbnailQuality
    ) -> Thumbnail:
        for name in fallback_names(quality):
            image = await self._fetch(upstream, video_id, name)
            if image is not None:
                self.cache.set(
                    (video_id, quality), image, size_bytes=len(image.content)
                )
                return image
            logger.debug("thumbnail %s missing for video_id=%s", name, video_id)
        raise NotFound(f"no thumbnail found for track {video_id}")

    async def _fetch(
        self, upstream: UpstreamClient, video_id: str, name: str
    ) -> Thumbnail | None:
        base = self._settings.thumbnail_base_url.rstrip("/")
        self.upstream_fetches += 1
        response = await upstream.open_stream(
            f"{base}/vi/{video_id}/{name}.jpg",
            headers={"Accept": "image/*", "Accept-Encoding": "identity"},
            what=f"thumbnail of {video_id}",
            allowed_hosts=(self._host,),
        )
        try:
            return await self._read(response, video_id, name)
        finally:
            await response.aclose()

    async def _read(
        self, response: httpx.Response, video_id: str, name: str
    ) -> Thumbnail | None:
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise UpstreamStatusError(
                f"thumbnail host returned {response.status_code} for track {video_id}",
                upstream_status=response.status_code,
            )
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("image/"):
            raise UpstreamError(
                f"thumbnail host sent {content_type!r} for track {video_id}"
            )
        content = await self._read_capped(response, video_id)
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        return Thumbnail(
            content=content, content_type=content_type, etag=etag, name=name
        )

    async def _read_capped(self, response: httpx.Response, video_id: str) -> bytes:
        limit = self._settings.thumbnail_max_bytes
        parts: list[bytes] = []
        size = 0
        try:
            # Decoded bytes: a host may compress the image although asked not to.
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise UpstreamError(
                        f"thumbnail of {video_id} is larger than {limit} bytes"
                    )
                parts.append(chunk)
        except httpx.HTTPError as error:
            raise UpstreamError(
                f"reading the thumbnail of {video_id} failed"
            ) from error
        return b"".join(parts)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Apply RFC 9110 section 13.1.2: weak comparison over a list, or ``*``."""
    if not if_none_match:
        return False
    candidates = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in candidates or any(
        tag.removeprefix("W/") == etag for tag in candidates
    )

"""Resolve a track to a playable stream URL with yt-dlp.

yt-dlp is blocking, so each extraction runs in a worker thread behind a
:class:`trio.CapacityLimiter`, under a hard deadline. Resolved URLs are cached per
(id, type, quality) until shortly before the URL's ``expire`` time, and
concurrent misses for one key share a single extraction.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qs, urlsplit

import trio
import yt_dlp
from yt_dlp.networking.exceptions import HTTPError as YtDlpHTTPError
from yt_dlp.networking.exceptions import TransportError as YtDlpTransportError

from ._cache import TTLCache
from ._errors import (
    ExtractionError,
    ExtractionTimeout,
    ExtractionUnavailable,
    InvalidInput,
    NotFound,
)
from ._settings import Settings
from ._singleflight import SingleFlight
from ._threads import run_in_worker

__all__ = [
    "Kind",
    "Quality",
    "ResolveKey",
    "Resolved",
    "Resolver",
    "convert_ytdlp_error",
    "format_spec",
    "parse_kind",
    "parse_quality",
    "track_title",
    "url_expiry",
    "ytdlp_params",
]

logger = logging.getLogger(__name__)


class Kind(enum.StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class Quality(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# YouTube itags: 251 Opus ~160 kbit/s, 140 AAC 128 kbit/s, 250 Opus ~70 kbit/s,
# 249 Opus ~50 kbit/s. The ``tbr`` filters pick the same tiers on hosts that
# have no itags, such as pages read by yt-dlp's generic extractor.
_AUDIO_FORMATS = {
    Quality.HIGH: "251/140/bestaudio/best",
    Quality.MEDIUM: "140/bestaudio[tbr<=144]/bestaudio/best",
    Quality.LOW: "250/249/bestaudio[tbr<=80]/worstaudio/worst",
}
# Only formats with both audio and video play in one <video> element.
_VIDEO_FORMATS = {
    Quality.HIGH: "best[vcodec!=none][acodec!=none]/best",
    Quality.MEDIUM: "best[height<=480][vcodec!=none][acodec!=none]/best",
    Quality.LOW: "worst[vcodec!=none][acodec!=none]/worst",
}


_E = TypeVar("_E", bound=enum.StrEnum)


def format_spec(kind: Kind, quality: Quality) -> str:
    """Return the yt-dlp format selector for ``kind`` at ``quality``."""
    table = _AUDIO_FORMATS if kind is Kind.AUDIO else _VIDEO_FORMATS
    return table[quality]


def parse_kind(raw: str | None) -> Kind:
    return _parse_enum(Kind, raw, "type", Kind.AUDIO)


def parse_quality(raw: str | None) -> Quality:
    return _parse_enum(Quality, raw, "quality", Quality.HIGH)


def _parse_enum(kind: type[_E], raw: str | None, name: str, default: _E) -> _E:
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidInput(f"invalid {name!r}: expected one of {allowed}") from None


@dataclass(frozen=True)
class Resolved:
    """A stream URL that yt-dlp chose for one track, type and quality."""

    video_id: str
    kind: Kind
    quality: Quality
    url: str = field(repr=False)
    format_id: str
    ext: str | None
    bitrate_kbps: float | None
    expires_at: float | None
    title: str | None
    artist: str | None
    duration_s: float | None
    # Headers that yt-dlp reports the media host expects, such as User-Agent.
    http_headers: tuple[tuple[str, str], ...] = field(repr=False, default=())


def url_expiry(url: str) -> float | None:
    """Return the Unix time in the URL's ``expire`` query parameter, if any.

    googlevideo stream URLs carry ``expire=<unix seconds>`` and return 403
    once it has passed.
    """
    values = parse_qs(urlsplit(url).query).get("expire")
    if not values:
        return None
    try:
        return float(values[0])
    except ValueError:
        return None


ResolveKey: TypeAlias = tuple[str, Kind, Quality]


@dataclass
class ResolverStats:
    extractions: int = 0
    failures: int = 0
    timeouts: int = 0


class Resolver:
    """Resolve tracks through yt-dlp with a cache and single flight."""

    def __init__(
        self,
        settings: Settings,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._wall_clock = wall_clock
        self.limiter = trio.CapacityLimiter(settings.extract_concurrency)
        self.cache: TTLCache[ResolveKey, Resolved] = TTLCache(
            max_entries=settings.stream_cache_entries,
            default_ttl_s=settings.stream_cache_ttl_s,
        )
        self.stats = ResolverStats()
        self._flights: SingleFlight[ResolveKey, Resolved] = SingleFlight()

    def cached(self, key: ResolveKey) -> Resolved | None:
        return self.cache.get(key)

    def invalidate(self, key: ResolveKey) -> None:
        """Forget the cached URL for ``key``, after the media host refused it."""
        self.cache.discard(key)

    def in_flight(self, key: ResolveKey) -> bool:
        return key in self._flights

    async def resolve(
        self,
        key: ResolveKey,
        nursery: trio.Nursery,
        before_extraction: Callable[[], None] | None = None,
    ) -> tuple[Resolved, bool]:
        """Return the stream for ``key`` and whether it came from the cache.

        A miss runs one extraction in ``nursery`` however many callers wait.
        ``before_extraction`` runs only in the caller that starts one, and
        may raise (a rate limit) to stop it.
        """
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        if before_extraction is not None and not self.in_flight(key):
            before_extraction()
        resolved, _ = await self._flights.run(key, lambda: self._extract(key), nursery)
        return resolved, False

    async def _extract(self, key: ResolveKey) -> Resolved:
        video_id, kind, quality = key
        self.stats.extractions += 1
        started = trio.current_time()
        logger.debug("extract.started video_id=%s type=%s quality=%s", *key)
        try:
            info = await self._run_yt_dlp(video_id, format_spec(kind, quality))
        except (ExtractionError, NotFound):
            self.stats.failures += 1
            raise
        resolved = _resolved_from_info(key, info)
        self._store(key, resolved)
        logger.info(
            "resolved video_id=%s type=%s quality=%s format=%s in %.0f ms",
            video_id,
            kind,
            quality,
            resolved.format_id,
            (trio.current_time() - started) * 1000,
        )
        return resolved

    async def _run_yt_dlp(self, video_id: str, spec: str) -> dict[str, Any]:
        url = self._settings.watch_url_template.format(id=video_id)
        timeout_s = self._settings.extract_timeout_s
        try:
            with trio.fail_after(timeout_s):
                return await run_in_worker(
                    _extract_blocking,
                    url,
                    spec,
                    self._yt_dlp_params(),
                    limiter=self.limiter,
                )
        except trio.TooSlowError:
            self.stats.timeouts += 1
            logger.warning(
                "extraction timed out video_id=%s after %g s", video_id, timeout_s
            )
            raise ExtractionTimeout(
                f"extraction of {video_id} timed out after {timeout_s:g} s"
            ) from None
        except yt_dlp.utils.YoutubeDLError as error:
            raise convert_ytdlp_error(video_id, error) from error

    def _yt_dlp_params(self) -> dict[str, Any]:
        return {**ytdlp_params(self._settings), "skip_download": True}

    def _store(self, key: ResolveKey, resolved: Resolved) -> None:
        ttl_s = self._settings.stream_cache_ttl_s
        if resolved.expires_at is not None:
            remaining_s = resolved.expires_at - self._wall_clock()
            ttl_s = min(ttl_s, remaining_s - self._settings.stream_url_margin_s)
        self.cache.set(key, resolved, ttl_s=ttl_s)


def ytdlp_params(settings: Settings) -> dict[str, Any]:
    """Return the yt-dlp options every extraction and download shares."""
    params: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "cachedir": False,
        "socket_timeout": settings.extract_socket_timeout_s,
        "logger": _YtDlpLogger(),
    }
    if settings.upstream_ca_file is not None:
        # With certifi turned off yt-dlp loads OpenSSL's default paths,
        # which honour SSL_CERT_FILE; the app sets it to the same file.
        params["compat_opts"] = ["no-certifi"]
    return params


def _extract_blocking(url: str, spec: str, params: dict[str, Any]) -> dict[str, Any]:
    with yt_dlp.YoutubeDL({**params, "format": spec}) as ydl:
        info = ydl.extract_info(url, download=False)
    return dict(info or {})


# Extensions yt-dlp may report for pages, images or storyboards, not streams.
_NOT_MEDIA = frozenset({"jpg", "jpeg", "png", "gif", "webp", "html", "mhtml"})


def _resolved_from_info(key: ResolveKey, info: dict[str, Any]) -> Resolved:
    video_id, kind, quality = key
    chosen = info if info.get("url") else _first_requested(info)
    if not chosen.get("url") or chosen.get("ext") in _NOT_MEDIA:
        raise ExtractionUnavailable(f"no playable {kind} format for {video_id}")
    url = str(chosen["url"])
    return Resolved(
        video_id=video_id,
        kind=kind,
        quality=quality,
        url=url,
        format_id=str(chosen.get("format_id") or "unknown"),
        ext=chosen.get("ext"),
        bitrate_kbps=chosen.get("abr") or chosen.get("tbr"),
        expires_at=url_expiry(url),
        title=track_title(info),
        artist=info.get("artist") or info.get("uploader") or info.get("channel"),
        duration_s=info.get("duration"),
        http_headers=tuple((chosen.get("http_headers") or {}).items()),
    )


_ENTRY_NUMBER = re.compile(r" \(\d+\)$")


def track_title(info: dict[str, Any]) -> str | None:
    """Return the title of a track from yt-dlp's info."""
    title = info.get("track") or info.get("title")
    if isinstance(title, str) and info.get("extractor_key") == "HTML5MediaEmbed":
        # yt-dlp numbers the <audio> elements of a page: "Title (1)".
        return _ENTRY_NUMBER.sub("", title)
    return title if isinstance(title, str) else None


def _first_requested(info: dict[str, Any]) -> dict[str, Any]:
    requested = info.get("requested_formats") or [{}]
    return dict(requested[0])


_URL = re.compile(r"https?://\S+")
_PREFIX = re.compile(r"^(ERROR: )?(\[[^\]]+\] )?([A-Za-z0-9_-]+: )?")


def convert_ytdlp_error(video_id: str, error: Exception) -> ExtractionError | NotFound:
    cause = root_cause(error)
    if isinstance(cause, YtDlpHTTPError):
        # The error keeps the upstream response, and with it an open socket,
        # alive for as long as our exception chain refers to it.
        cause.response.close()
    if isinstance(cause, YtDlpHTTPError) and cause.status == 404:
        return NotFound(f"track {video_id} was not found")
    if isinstance(cause, YtDlpTransportError | YtDlpHTTPError):
        return ExtractionError(
            f"extraction of {video_id} failed: the upstream could not be reached"
        )
    return ExtractionUnavailable(
        f"track {video_id} is unavailable: {_short_reason(error)}"
    )


def root_cause(error: BaseException) -> BaseException | None:
    exc_info = getattr(error, "exc_info", None)
    original = exc_info[1] if exc_info else None
    return getattr(original, "cause", None) or original


def _short_reason(error: Exception) -> str:
    # Stream and page URLs are left out: they can carry the server's address.
    cause = root_cause(error)
    message = getattr(cause, "orig_msg", None) or str(error)
    message = _URL.sub("<url>", _PREFIX.sub("", message.strip()))
    first_line = message.splitlines()[0][:200] if message else ""
    return first_line or "unknown error"


class _YtDlpLogger:
    """Route yt-dlp's output to logging; its errors are logged by the caller."""

    def debug(self, message: str) -> None:
        logger.debug("yt-dlp: %s", message)

    def info(self, message: str) -> None:
        logger.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        logger.debug("yt-dlp warning: %s", message)

    def error(self, message: str) -> None:
        logger.debug("yt-dlp error: %s", message)

"""Search YouTube through the innertube JSON API, with yt-dlp as the fallback.

YouTube moves results between renderer shapes without notice, so the parser
walks the whole response and reads every shape in current use: the classic
``videoRenderer`` and the newer ``lockupViewModel``, at any depth under rich
item, section or shelf wrappers. Items that are not playable videos (channels,
playlists, ads, shorts, continuations) are skipped, and so is the subtree
under them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio
import yt_dlp

from ._cache import TTLCache
from ._errors import InvalidInput, UpstreamError
from ._settings import Settings
from ._threads import run_in_worker
from ._upstream import UpstreamClient

__all__ = [
    "SearchResult",
    "Searcher",
    "parse_count",
    "parse_duration",
    "parse_search_query",
    "parse_search_response",
]

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 200
DEFAULT_LIMIT = 10
MAX_LIMIT = 50

_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{11}")
# Renderers whose subtree contains no playable video of its own.
_SKIPPED = frozenset(
    {
        "channelRenderer",
        "playlistRenderer",
        "radioRenderer",
        "movieRenderer",
        "adSlotRenderer",
        "promotedSparklesWebRenderer",
        "searchPyvRenderer",
        "promotedVideoRenderer",
        "reelShelfRenderer",
        "reelItemRenderer",
        "shortsLockupViewModel",
        "continuationItemRenderer",
        "showingResultsForRenderer",
        "didYouMeanRenderer",
        "searchRefinementCardRenderer",
        "horizontalCardListRenderer",
    }
)
_VIDEO_RENDERERS = frozenset({"videoRenderer", "compactVideoRenderer"})


@dataclass(frozen=True)
class SearchResult:
    """One playable video found by a search, in the Node server's fields."""

    video_id: str
    title: str
    artist: str | None
    duration_s: int | None
    views: int | None

    def as_json(self, thumbnail: str) -> dict[str, Any]:
        return {
            "id": self.video_id,
            "title": self.title,
            "artist": self.artist,
            "duration": self.duration_s,
            "thumbnail": thumbnail,
            "views": self.views,
        }


def parse_search_query(raw_query: str | None, raw_limit: str | None) -> tuple[str, int]:
    """Validate ``q`` and ``limit``; ``limit`` is clamped to 1..50."""
    query = (raw_query or "").strip()
    if not query:
        raise InvalidInput("missing parameter 'q': expected a search query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(
            f"invalid 'q': expected at most {MAX_QUERY_CHARS} characters"
        )
    if raw_limit is None or raw_limit.strip() == "":
        return query, DEFAULT_LIMIT
    try:
        limit = int(raw_limit)
    except ValueError:
        raise InvalidInput(
            "invalid 'limit': expected an integer from 1 to 50"
        ) from None
    return query, min(max(limit, 1), MAX_LIMIT)


def parse_duration(text: str | None) -> int | None:
    """Parse ``H:MM:SS`` or ``M:SS`` into seconds; anything else is None."""
    if not text:
        return None
    parts = text.strip().split(":")
    if not 2 <= len(parts) <= 3 or not all(part.isdigit() for part in parts):
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return seconds


_COUNT = re.compile(r"([\d][\d,.]*)\s*([KMB])?", re.IGNORECASE)
_SCALE = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def parse_count(text: str | None) -> int | None:
    """Parse view texts such as ``1,234 views``, ``1.2M views``, ``No views``."""
    if not text:
        return None
    if text.strip().lower().startswith("no "):
        return 0
    match = _COUNT.search(text)
    if match is None:
        return None
    number, suffix = match.groups()
    if suffix:
        return round(float(number.replace(",", "")) * _SCALE[suffix.lower()])
    return int(number.replace(",", "").replace(".", ""))


def _text(node: Any) -> str | None:
    """Read YouTube's text objects: ``simpleText``, ``runs`` or ``content``."""
    if isinstance(node, str):
        return node
    if not isinstance(node, dict):
        return None
    if isinstance(node.get("simpleText"), str):
        return str(node["simpleText"])
    if isinstance(node.get("content"), str):
        return str(node["content"])
    runs = node.get("runs")
    if isinstance(runs, list):
        return "".join(
            str(run.get("text", "")) for run in runs if isinstance(run, dict)
        )
    return None


def _dig(node: Any, *path: str | int) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                return None
        elif not isinstance(node, dict):
            return None
        node = node[step] if isinstance(step, int) else node.get(step)
    return node


def _walk(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (renderer name, body) for every video-shaped item, depth first."""
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in _SKIPPED:
            continue
        if isinstance(value, dict) and (
            key in _VIDEO_RENDERERS or key == "lockupViewModel"
        ):
            yield key, value
        else:
            yield from _walk(value)


def _from_video_renderer(body: dict[str, Any]) -> SearchResult | None:
    video_id = body.get("videoId")
    if _dig(body, "navigationEndpoint", "reelWatchEndpoint") is not None:
        return None  # a short
    title = _text(body.get("title"))
    if not isinstance(video_id, str) or not title:
        return None
    owner = (
        body.get("ownerText")
        or body.get("longBylineText")
        or body.get("shortBylineText")
    )
    length = _text(body.get("lengthText"))
    views = _text(body.get("viewCountText"))
    return SearchResult(
        video_id=video_id,
        title=title,
        artist=_text(owner),
        duration_s=None if _is_live_renderer(body) else parse_duration(length),
        views=None if _is_live_renderer(body) else parse_count(views),
    )


def _is_live_renderer(body: dict[str, Any]) -> bool:
    for badge in body.get("badges") or ():
        style = _dig(badge, "metadataBadgeRenderer", "style")
        if style == "BADGE_STYLE_TYPE_LIVE_NOW":
            return True
    return body.get("lengthText") is None and "watching" in (
        _text(body.get("viewCountText")) or ""
    )


def _from_lockup(body: dict[str, Any]) -> SearchResult | None:
    if body.get("contentType") != "LOCKUP_CONTENT_TYPE_VIDEO":
        return None
    metadata = _dig(body, "metadata", "lockupMetadataViewModel") or {}
    title = _text(metadata.get("title"))
    video_id = body.get("contentId")
    if not isinstance(video_id, str) or not title:
        return None
    rows = _dig(metadata, "metadata", "contentMetadataViewModel", "metadataRows") or []
    parts = [
        _text(part.get("text"))
        for row in rows
        if isinstance(row, dict)
        for part in row.get("metadataParts") or ()
        if isinstance(part, dict)
    ]
    badge = _lockup_badge(body)
    live = badge is not None and badge.upper() == "LIVE"
    views = next((part for part in parts if part and "view" in part.lower()), None)
    return SearchResult(
        video_id=video_id,
        title=title,
        artist=parts[0] if parts else None,
        duration_s=None if live else parse_duration(badge),
        views=None if live else parse_count(views),
    )


def _lockup_badge(body: dict[str, Any]) -> str | None:
    overlays = _dig(body, "contentImage", "thumbnailViewModel", "overlays") or []
    for overlay in overlays:
        for holder, key in (
            ("thumbnailOverlayBadgeViewModel", "thumbnailBadges"),
            ("thumbnailBottomOverlayViewModel", "badges"),
        ):
            for badge in _dig(overlay, holder, key) or ():
                text = _dig(badge, "thumbnailBadgeViewModel", "text")
                if isinstance(text, str):
                    return text
    return None


def parse_search_response(data: Any) -> list[SearchResult]:
    """Return the playable videos in an innertube search response, in order."""
    results: list[SearchResult] = []
    seen: set[str] = set()
    for key, body in _walk(data):
        result = (
            _from_lockup(body)
            if key == "lockupViewModel"
            else _from_video_renderer(body)
        )
        if (
            result is None
            or result.video_id in seen
            or not _VIDEO_ID.fullmatch(result.video_id)
        ):
            continue
        seen.add(result.video_id)
        results.append(result)
    return results


FallbackSearch = Callable[[str, int], list[dict[str, Any]]]


def ytdlp_search(query: str, limit: int) -> list[dict[str, Any]]:
    """Run yt-dlp's ``ytsearchN:`` (blocking) and return its flat entries."""
    params = {"quiet": True, "no_warnings": True, "extract_flat": "in_playlist"}
    with yt_dlp.YoutubeDL(params) as ydl:
        info = ydl.extract_info(f"ytsearch{limit}:{query}", download=False)
    return [dict(entry) for entry in (info or {}).get("entries") or () if entry]


def _from_ytdlp_entry(entry: dict[str, Any]) -> SearchResult | None:
    video_id, title = entry.get("id"), entry.get("title")
    if not isinstance(video_id, str) or not isinstance(title, str):
        return None
    duration = entry.get("duration")
    views = entry.get("view_count")
    return SearchResult(
        video_id=video_id,
        title=title,
        artist=entry.get("channel") or entry.get("uploader"),
        duration_s=int(duration) if isinstance(duration, int | float) else None,
        views=int(views) if isinstance(views, int) else None,
    )


class Searcher:
    """Search innertube first, yt-dlp second, with results cached briefly."""

    def __init__(
        self,
        settings: Settings,
        limiter: trio.CapacityLimiter,
        fallback: FallbackSearch | None = ytdlp_search,
    ) -> None:
        self._settings = settings
        self._limiter = limiter
        # None turns the fallback off; tests replace it at this boundary.
        self.fallback = fallback
        self.cache: TTLCache[tuple[str, int], list[SearchResult]] = TTLCache(
            max_entries=settings.search_cache_entries,
            default_ttl_s=settings.search_cache_ttl_s,
        )
        self.fallbacks_used = 0

    async def search(
        self,
        upstream: UpstreamClient,
        query: str,
        limit: int,
        before_fallback: Callable[[], None] | None = None,
    ) -> list[SearchResult]:
        """Return up to ``limit`` results; ``before_fallback`` runs (and may
        raise) before yt-dlp is used, since that is an extraction."""
        key = (query, limit)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        try:
            results = await self._innertube(upstream, query)
        except UpstreamError as error:
            logger.warning(
                "innertube search failed (%s); falling back to yt-dlp", error
            )
            results = await self._fallback(query, limit)
        results = results[:limit]
        self.cache.set(key, results)
        return results

    async def _innertube(
        self, upstream: UpstreamClient, query: str
    ) -> list[SearchResult]:
        response = await upstream.post_json(
            self._innertube_url(),
            self._innertube_body(query),
            headers=self._innertube_headers(),
            what="innertube search",
        )
        if response.status_code != 200:
            raise UpstreamError(f"innertube search returned {response.status_code}")
        try:
            data = response.json()
        except ValueError as error:
            raise UpstreamError(
                "innertube search returned a body that is not JSON"
            ) from error
        results = parse_search_response(data)
        if not results and not _looks_empty(data):
            logger.warning("innertube search response had no results in a known shape")
        return results

    def _innertube_url(self) -> str:
        base = self._settings.innertube_base_url.rstrip("/")
        return f"{base}/youtubei/v1/search?prettyPrint=false"

    def _innertube_headers(self) -> dict[str, str]:
        # The key goes in a header, not the URL, so URL logs cannot reveal it.
        key = self._settings.yt_api_key
        return {} if key is None else {"X-Goog-Api-Key": key}

    def _innertube_body(self, query: str) -> dict[str, Any]:
        client = {
            "clientName": self._settings.innertube_client_name,
            "clientVersion": self._settings.innertube_client_version,
            "hl": "en",
            "gl": "US",
        }
        return {"context": {"client": client}, "query": query}

    async def _fallback(self, query: str, limit: int) -> list[SearchResult]:
        if self.fallback is None:
            raise UpstreamError(
                "innertube search failed and the yt-dlp fallback is off"
            )
        self.fallbacks_used += 1
        entries = await self._run_fallback(self.fallback, query, limit)
        return [result for entry in entries if (result := _from_ytdlp_entry(entry))]

    async def _run_fallback(
        self, fallback: FallbackSearch, query: str, limit: int
    ) -> list[dict[str, Any]]:
        try:
            with trio.fail_after(self._settings.extract_timeout_s):
                return await run_in_worker(
                    fallback, query, limit, limiter=self._limiter
                )
        except trio.TooSlowError:
            raise UpstreamError("yt-dlp search timed out") from None
        except (yt_dlp.utils.YoutubeDLError, OSError) as error:
            raise UpstreamError("yt-dlp search failed") from error


def _looks_empty(data: Any) -> bool:
    """Tell whether a response states that nothing matched."""
    return (
        isinstance(data, dict)
        and "estimatedResults" in data
        and data["estimatedResults"] in ("0", 0)
    )

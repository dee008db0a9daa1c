"""The state one running app shares between requests and background tasks."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any

import trio
from quart import current_app

from ._cache import TTLCache
from ._downloads import Downloader
from ._library import Library
from ._proxy import StreamSupervisor
from ._ratelimit import RateLimiter, RateLimitSettings
from ._resolver import ResolveKey, Resolver
from ._search import Searcher, ytdlp_search
from ._settings import Settings
from ._thumbnails import Thumbnails
from ._upstream import UpstreamClient

__all__ = ["EXTENSION_KEY", "Services", "current_services"]

EXTENSION_KEY = "voyo_trio"
# A track boosted within this long is not boosted again, and at most this
# many tracks are remembered.
_BOOSTED_TTL_S = 3600.0
_BOOSTED_ENTRIES = 10_000

logger = logging.getLogger(__name__)


class Services:
    """Own the shared client, the caches and the background nursery.

    :meth:`run` must be started (``nursery.start``) before requests are served;
    every background task and stream pump runs in its nursery.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.monotonic()
        self.resolver = Resolver(settings)
        fallback = ytdlp_search if settings.search_fallback else None
        self.searcher = Searcher(settings, self.resolver.limiter, fallback)
        self.thumbnails = Thumbnails(settings)
        self.library = Library(
            settings.library_dir, max_bytes=settings.library_max_bytes
        )
        self.library.prepare()
        self.downloads = Downloader(settings, self.library)
        self.streams = StreamSupervisor(settings)
        self.prefetched: TTLCache[ResolveKey, bool] = TTLCache(
            max_entries=settings.stream_cache_entries,
            default_ttl_s=settings.prefetch_ttl_s,
        )
        self.prefetch_pending = 0
        # Open streams per client address, for max_streams_per_client.
        self.client_streams: Counter[str] = Counter()
        self.limiter = RateLimiter(_rate_limit_settings(settings))
        # (client, track) pairs whose playback already paid for its first
        # media request; further Range requests within the window are free.
        self.media_sessions: TTLCache[tuple[str, str], bool] = TTLCache(
            max_entries=settings.rate_limit_max_clients * 4,
            default_ttl_s=settings.rate_limit_window_s,
        )
        # Tracks a boost download was started for recently, so the Range
        # requests of one playback start one download at most.
        self.boosted: TTLCache[str, bool] = TTLCache(
            max_entries=_BOOSTED_ENTRIES, default_ttl_s=_BOOSTED_TTL_S
        )
        self._upstream: UpstreamClient | None = None
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()

    @property
    def upstream(self) -> UpstreamClient:
        if self._upstream is None:
            raise RuntimeError("the upstream client is not open")
        return self._upstream

    @property
    def nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("the background nursery is not running")
        return self._nursery

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Open the client, run background work until stopped, close the client."""
        self._trust_upstream_ca()
        self._upstream = UpstreamClient(
            self.settings, allowed_hosts=self.settings.media_hosts
        )
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.streams.run)
                nursery.start_soon(self._sweep_forever)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await self._upstream.aclose()
            self._stopped.set()

    async def stop(self) -> None:
        """Cancel every background task and stream, then wait for the close."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        await self._stopped.wait()

    def _trust_upstream_ca(self) -> None:
        ca_file = self.settings.upstream_ca_file
        if ca_file is None:
            return
        # NOTE: yt-dlp has no option for a CA file; with certifi turned off it
        # reads SSL_CERT_FILE, which is process-wide.
        os.environ["SSL_CERT_FILE"] = str(ca_file)

    async def _sweep_forever(self) -> None:
        while True:
            await trio.sleep(self.settings.sweep_interval_s)
            caches = (
                self.resolver.cache,
                self.prefetched,
                self.boosted,
                self.searcher.cache,
                self.thumbnails.cache,
            )
            dropped = sum(cache.sweep() for cache in caches) + self.limiter.sweep()
            logger.debug("cache.sweep dropped=%d", dropped)


def _rate_limit_settings(settings: Settings) -> RateLimitSettings:
    return RateLimitSettings(
        enabled=settings.rate_limit_enabled,
        requests_per_window=settings.rate_limit_requests,
        extractions_per_window=settings.rate_limit_extractions,
        global_extractions_per_window=settings.rate_limit_global_extractions,
        window_s=settings.rate_limit_window_s,
        max_clients=settings.rate_limit_max_clients,
    )


def current_services() -> Services:
    """Return the services of the app that serves the current request."""
    services: Services = current_app.extensions[EXTENSION_KEY]
    return services

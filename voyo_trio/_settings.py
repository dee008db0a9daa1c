"""Typed settings read from ``VOYO_*`` environment variables.

Every field of :class:`Settings` maps to the variable ``VOYO_`` + its upper-cased
name, for example ``read_timeout_s`` to ``VOYO_READ_TIMEOUT_S``. Units are part
of the names (``_s`` seconds, ``_bytes`` bytes). Lists are comma-separated. The
YouTube API key is read from ``YT_API_KEY`` and has no default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ENV_PREFIX", "Settings", "SettingsError"]

ENV_PREFIX = "VOYO_"
_API_KEY_VARIABLE = "YT_API_KEY"


class SettingsError(ValueError):
    """A setting from the environment is invalid; the message names the variable."""


# Inclusive (low, high) limits of the numeric settings.
_BOUNDS: dict[str, tuple[float, float]] = {
    "port": (0, 65535),
    "extract_concurrency": (1, 64),
    "extract_timeout_s": (0.1, 600),
    "extract_socket_timeout_s": (0.1, 600),
    "stream_cache_ttl_s": (1, 86400),
    "stream_url_margin_s": (0, 3600),
    "stream_cache_entries": (1, 10**7),
    "prefetch_ttl_s": (1, 86400),
    "prefetch_max_pending": (1, 10000),
    "sweep_interval_s": (1, 86400),
    "pool_max_connections": (1, 10000),
    "pool_max_keepalive": (0, 10000),
    "pool_keepalive_expiry_s": (0, 3600),
    "connect_timeout_s": (0.01, 600),
    "read_timeout_s": (0.01, 3600),
    "pool_timeout_s": (0.01, 600),
    "max_redirects": (0, 20),
    "search_cache_ttl_s": (0, 86400),
    "search_cache_entries": (1, 10**6),
    "thumbnail_cache_entries": (1, 10**6),
    "thumbnail_cache_bytes": (0, 2**40),
    "thumbnail_cache_ttl_s": (1, 7 * 86400),
    "thumbnail_max_bytes": (1024, 2**30),
    "stream_chunk_bytes": (1024, 2**24),
    "stream_buffer_chunks": (0, 1024),
    "stream_idle_timeout_s": (1, 86400),
    "shutdown_grace_s": (0, 3600),
    "library_max_bytes": (1, 2**50),
    "download_concurrency": (1, 32),
    "download_wait_s": (0, 3600),
    "download_timeout_s": (1, 86400),
    "download_retries": (0, 100),
    "boost_max_pending": (1, 1000),
    "rate_limit_requests": (0, 10**6),
    "rate_limit_extractions": (0, 10**6),
    "rate_limit_global_extractions": (0, 10**7),
    "rate_limit_window_s": (1, 86400),
    "rate_limit_max_clients": (1, 10**7),
    "trusted_proxy_hops": (0, 16),
    "client_ipv6_prefix": (16, 128),
    "max_streams_per_client": (0, 10000),
}


@dataclass(frozen=True)
class Settings:
    """Every tunable of the server, with defaults fit for one small host."""

    host: str = "127.0.0.1"
    port: int = 3001
    # Base of the URLs this server hands out, such as ``https://music.example``.
    # When unset, URLs are built from the request's Host header.
    public_base_url: str | None = None
    cors_origins: tuple[str, ...] = ("http://localhost:5173", "http://localhost:3000")

    # Upstreams. ``{id}`` in the template is replaced by the YouTube id.
    watch_url_template: str = "https://www.youtube.com/watch?v={id}"
    # Hosts the proxy may fetch media from; ``*.`` matches any subdomain.
    media_hosts: tuple[str, ...] = ("*.googlevideo.com",)
    # Search goes to innertube first; yt-dlp's ytsearch is the fallback.
    innertube_base_url: str = "https://www.youtube.com"
    innertube_client_name: str = "WEB"
    innertube_client_version: str = "2.20241201.01.00"
    search_fallback: bool = True
    search_cache_ttl_s: float = 300.0
    search_cache_entries: int = 1000
    # Cover art: ``{base}/vi/{id}/{name}.jpg``, cached by count and bytes.
    thumbnail_base_url: str = "https://i.ytimg.com"
    thumbnail_cache_entries: int = 500
    thumbnail_cache_bytes: int = 64 * 1024 * 1024
    thumbnail_cache_ttl_s: float = 24 * 3600.0
    thumbnail_max_bytes: int = 2 * 1024 * 1024
    # PEM bundle trusted for upstream TLS in place of the default store.
    upstream_ca_file: Path | None = None

    # yt-dlp runs in worker threads.
    extract_concurrency: int = 3
    extract_timeout_s: float = 30.0
    extract_socket_timeout_s: float = 15.0

    # Resolved stream URLs live until their ``expire`` time minus the margin,
    # and never longer than the TTL.
    stream_cache_ttl_s: float = 4 * 3600.0
    stream_url_margin_s: float = 300.0
    stream_cache_entries: int = 5000
    prefetch_ttl_s: float = 1800.0
    prefetch_max_pending: int = 32
    sweep_interval_s: float = 600.0

    # The shared httpx client.
    pool_max_connections: int = 100
    pool_max_keepalive: int = 20
    pool_keepalive_expiry_s: float = 30.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    pool_timeout_s: float = 5.0
    max_redirects: int = 3

    # The stream proxy. A chunk is at most stream_chunk_bytes, and the pump
    # queues stream_buffer_chunks of them beyond the one it holds.
    stream_chunk_bytes: int = 64 * 1024
    stream_buffer_chunks: int = 0
    # A listener that reads nothing for this long is dropped.
    stream_idle_timeout_s: float = 300.0
    shutdown_grace_s: float = 10.0

    # The offline library: a folder of downloaded tracks, bounded in size.
    library_dir: Path = Path("library")
    library_max_bytes: int = 2 * 1024**3
    download_concurrency: int = 2
    # /download responds 202 with progress when a job takes longer than this.
    download_wait_s: float = 20.0
    download_timeout_s: float = 600.0
    download_retries: int = 3
    # Convert downloads to MP3 with ffmpeg; needs ffmpeg on PATH.
    download_mp3: bool = False
    # Download each track played through the proxy, so the next play is local.
    boost_downloads: bool = False
    boost_max_pending: int = 2

    # Token buckets per client address; a budget of 0 turns it off.
    rate_limit_enabled: bool = True
    rate_limit_requests: int = 60
    rate_limit_extractions: int = 10
    rate_limit_global_extractions: int = 300
    rate_limit_window_s: float = 60.0
    rate_limit_max_clients: int = 10_000
    # Streams one client may hold open at once; 0 turns the cap off.
    max_streams_per_client: int = 8
    # Reverse proxies in front of the server whose X-Forwarded-For is trusted;
    # 0 keys clients on the socket's peer address.
    trusted_proxy_hops: int = 0
    # IPv6 clients are keyed by this many leading bits; 128 keys each address.
    client_ipv6_prefix: int = 64

    log_level: str = "INFO"
    yt_api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name, bounds in _BOUNDS.items():
            _check_bounds(_variable_name(name), getattr(self, name), bounds)
        _check_log_level(self.log_level)
        if "{id}" not in self.watch_url_template:
            raise SettingsError(
                f"invalid setting {ENV_PREFIX}WATCH_URL_TEMPLATE="
                f"{self.watch_url_template!r}: it must contain '{{id}}'"
            )
        for origin in self.cors_origins:
            _check_url(f"{ENV_PREFIX}CORS_ORIGINS", origin)
        if self.public_base_url is not None:
            _check_url(f"{ENV_PREFIX}PUBLIC_BASE_URL", self.public_base_url)
        _check_url(f"{ENV_PREFIX}INNERTUBE_BASE_URL", self.innertube_base_url)
        if self.upstream_ca_file is not None and not self.upstream_ca_file.is_file():
            raise SettingsError(
                f"invalid setting {ENV_PREFIX}UPSTREAM_CA_FILE="
                f"{str(self.upstream_ca_file)!r}: no such file"
            )
        _check_url(f"{ENV_PREFIX}THUMBNAIL_BASE_URL", self.thumbnail_base_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``).

        Raises :class:`SettingsError` naming the first invalid variable.
        """
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = _variable_name(spec.name)
            if name in environ:
                raw = environ[name]
                values[spec.name] = _parse(name, raw, hints[spec.name])
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes)


def _variable_name(field_name: str) -> str:
    if field_name == "yt_api_key":
        return _API_KEY_VARIABLE
    return ENV_PREFIX + field_name.upper()


def _parse(name: str, raw: str, hint: Any) -> Any:
    optional = _is_optional(hint)
    if optional and raw.strip() == "":
        return None
    base = _strip_none(hint) if optional else hint
    try:
        return _convert(raw.strip(), base)
    except ValueError as error:
        raise SettingsError(f"invalid setting {name}={raw!r}: {error}") from None


def _is_optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def _strip_none(hint: Any) -> Any:
    (base,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return base


def _convert(raw: str, hint: Any) -> Any:
    if hint is bool:
        return _parse_bool(raw)
    if hint is int:
        return _parse_number(raw, int, "an integer")
    if hint is float:
        return _parse_number(raw, float, "a number")
    if hint is Path:
        return Path(raw)
    if typing.get_origin(hint) is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


def _parse_number(raw: str, kind: type[Any], label: str) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"expected {label}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected {label}")
    return value


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected one of true, false, 1, 0, yes, no, on, off")


def _check_bounds(name: str, value: float, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise SettingsError(
            f"invalid setting {name}={value!r}: "
            f"expected a value from {low:g} to {high:g}"
        )


def _check_log_level(level: str) -> None:
    if level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(
            f"invalid setting {ENV_PREFIX}LOG_LEVEL={level!r}: "
            "expected DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SettingsError(
            f"invalid setting {name}={url!r}: expected an http or https URL"
        )

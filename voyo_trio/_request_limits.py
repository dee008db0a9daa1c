"""Which client a request comes from, and what it is charged.

Every request but ``/health`` and CORS preflights costs one token of the
client's general budget. A playback pays only once: its first media request
for a track is charged. Further ``Range`` requests by the same client for
the same track, proxied or from the library, are free while they keep
coming within the rate-limit window. The extraction budgets are charged
only where yt-dlp will really run, on a cache miss.
"""

from __future__ import annotations

from collections.abc import Callable

from quart import g, request

from ._clientip import client_address, client_key
from ._errors import InvalidInput
from ._ids import parse_track_ref, parse_video_id
from ._services import Services, current_services

__all__ = ["charge_request", "extraction_charge", "request_client"]

_EXEMPT_ENDPOINTS = frozenset({"voyo.health"})


def request_client() -> str:
    """Return the rate-limit key of the current request's client."""
    client: str | None = g.get("client")
    if client is None:
        settings = current_services().settings
        forwarded = request.headers.getlist("X-Forwarded-For")
        address = client_address(
            request.remote_addr, forwarded, settings.trusted_proxy_hops
        )
        client = g.client = client_key(address, settings.client_ipv6_prefix)
    return client


def charge_request() -> None:
    """Charge the general budget, raising RateLimited when it is spent."""
    if request.method == "OPTIONS" or request.endpoint in _EXEMPT_ENDPOINTS:
        return
    voyo = current_services()
    client = request_client()
    session = _media_session(client)
    if session is None:
        voyo.limiter.check_request(client)
        return
    if voyo.media_sessions.get(session) is None:
        voyo.limiter.check_request(client)
    voyo.media_sessions.set(session, True)


def _media_session(client: str) -> tuple[str, str] | None:
    video_id = _media_video_id()
    return None if video_id is None else (client, video_id)


def _media_video_id() -> str | None:
    try:
        if request.endpoint == "voyo.proxy":
            return parse_video_id(request.args.get("v"))
        if request.endpoint == "voyo.cdn_stream" and request.view_args:
            return parse_track_ref(str(request.view_args.get("track")))
        if request.endpoint == "voyo_library.stored_file" and request.view_args:
            stem = str(request.view_args.get("name")).partition(".")[0]
            return parse_video_id(stem)
    except InvalidInput:
        return None
    return None


def extraction_charge(voyo: Services | None = None) -> Callable[[], None]:
    """Return a callback that charges this client's extraction budgets."""
    voyo = current_services() if voyo is None else voyo
    client = request_client()
    limiter = voyo.limiter
    return lambda: limiter.check_extraction(client)

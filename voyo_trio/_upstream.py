"""The one pooled httpx client that every request and task shares.

It fetches only ``https`` URLs whose host is on an allow-list, follows
redirects itself so each hop is checked, and converts httpx exceptions into
:mod:`voyo_trio._errors` classes at this single boundary.

Requests go straight to an :class:`httpx.AsyncHTTPTransport`, the connection
pool that an :class:`httpx.AsyncClient` wraps. The client layer adds nothing
used here (redirects and timeouts are handled in this module, and cookies
must not be kept), yet parsing ``Set-Cookie`` and merging defaults took about
12% of the CPU time of a small proxied request in a profile.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from ._errors import (
    ForbiddenHost,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from ._settings import Settings

__all__ = ["PoolState", "UpstreamClient", "host_allowed"]

logger = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "voyo-trio/0.1"
# Sent with every upstream request unless the caller gives its own value.
_DEFAULT_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
}


@dataclass(frozen=True)
class PoolState:
    """Connections held by the pool: ``active`` ones carry a request now."""

    connections: int
    idle: int
    active: int


def host_allowed(url: str, patterns: Iterable[str]) -> bool:
    """Tell whether ``url`` is https on a host that one of ``patterns`` matches.

    A pattern is a host name, or ``*.`` and a domain that matches every
    subdomain of it (not the domain itself).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        # Unbalanced brackets around an IPv6 host, for example.
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme != "https" or not host:
        return False
    return any(_host_matches(host, pattern.lower()) for pattern in patterns)


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _ssl_context(settings: Settings) -> ssl.SSLContext | bool:
    if settings.upstream_ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(settings.upstream_ca_file))


class UpstreamClient:
    """Own the shared :class:`httpx.AsyncClient` and its connection pool."""

    def __init__(self, settings: Settings, *, allowed_hosts: Iterable[str]) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self._max_redirects = settings.max_redirects
        limits = httpx.Limits(
            max_connections=settings.pool_max_connections,
            max_keepalive_connections=settings.pool_max_keepalive,
            keepalive_expiry=settings.pool_keepalive_expiry_s,
        )
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.pool_timeout_s,
        )
        self._extensions = {"timeout": timeout.as_dict()}
        # There is no cookie jar, so nothing that one listener's request set
        # is sent on another listener's behalf.
        self._transport = httpx.AsyncHTTPTransport(
            verify=_ssl_context(settings), limits=limits, trust_env=False
        )

    async def aclose(self) -> None:
        await self._transport.aclose()

    def pool_state(self) -> PoolState:
        """Count the pool's connections by state.

        NOTE: httpx has no public view of its pool; this reads httpcore's
        ``AsyncConnectionPool.connections`` through the transport.
        """
        pool = getattr(self._transport, "_pool", None)
        connections = list(getattr(pool, "connections", ()))
        live = [conn for conn in connections if not conn.is_closed()]
        idle = sum(1 for conn in live if conn.is_idle())
        return PoolState(connections=len(live), idle=idle, active=len(live) - idle)

    async def open_stream(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        what: str,
        allowed_hosts: Iterable[str] | None = None,
    ) -> httpx.Response:
        """Send a GET to an allowed host and return the response, body unread.

        Redirects are followed up to the configured number of hops, each to an
        allowed host: ``allowed_hosts``, by default the media hosts. The caller
        must ``aclose()`` the returned response. ``what`` names the request in
        errors and logs, for example a track id.
        """
        allowed = self.allowed_hosts if allowed_hosts is None else tuple(allowed_hosts)
        for _ in range(self._max_redirects + 1):
            self._check_host(url, what, allowed)
            request = self._request("GET", url, headers, what)
            response = await self._send(request, what)
            if response.status_code not in _REDIRECTS:
                return response
            await response.aclose()
            try:
                url = urljoin(url, response.headers.get("location", ""))
            except ValueError:
                logger.warning("invalid redirect location for %s", what)
                raise UpstreamError(
                    f"upstream for {what} redirected to an invalid URL"
                ) from None
            logger.debug("upstream redirect for %s to host %s", what, _host(url))
        raise UpstreamError(
            f"upstream for {what} redirected more than {self._max_redirects} times"
        )

    async def post_json(
        self, url: str, body: Any, *, headers: Mapping[str, str], what: str
    ) -> httpx.Response:
        """POST ``body`` as JSON to a configured URL and read the whole response.

        Redirects are not followed: the URL comes from settings, not from an
        upstream.
        """
        request = self._request("POST", url, headers, what, json=body)
        response = await self._send(request, what)
        try:
            await response.aread()
        except httpx.HTTPError as error:
            raise UpstreamError(f"reading the {what} response failed") from error
        finally:
            await response.aclose()
        return response

    def _check_host(self, url: str, what: str, allowed: tuple[str, ...]) -> None:
        if not host_allowed(url, allowed):
            scheme = url.partition(":")[0][:16]
            logger.warning(
                "rejected upstream host %r (scheme %r) for %s", _host(url), scheme, what
            )
            raise ForbiddenHost(f"upstream host for {what} is not on the allow-list")

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        what: str,
        json: Any = None,
    ) -> httpx.Request:
        merged = httpx.Headers(_DEFAULT_HEADERS)
        merged.update(headers)
        try:
            return httpx.Request(
                method,
                url,
                headers=merged,
                json=json,
                extensions=dict(self._extensions),
            )
        except httpx.InvalidURL as error:
            # A redirect's Location can carry a port or characters httpx rejects.
            logger.warning("invalid upstream URL for %s: %s", what, error)
            raise UpstreamError(f"upstream for {what} gave an invalid URL") from None

    async def _send(self, request: httpx.Request, what: str) -> httpx.Response:
        """Send ``request`` through the pool and return the response, body unread."""
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TimeoutException as error:
            raise UpstreamTimeout(f"upstream for {what} timed out") from error
        except httpx.ConnectError as error:
            raise UpstreamConnectError(
                f"could not connect to the upstream for {what}"
            ) from error
        except httpx.HTTPError as error:
            raise UpstreamError(
                f"upstream request for {what} failed: {type(error).__name__}"
            ) from error
        response.request = request
        return response


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"

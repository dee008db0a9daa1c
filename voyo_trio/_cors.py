"""CORS enforced from the allow-list in settings.

A listed ``Origin`` is echoed back; any other gets no
``Access-Control-Allow-Origin``, so the browser blocks the response. Every
response varies on ``Origin`` because its headers depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from quart import Response

__all__ = ["CorsPolicy"]

_EXPOSED = "Content-Range, Content-Length, Accept-Ranges, Retry-After"
_ALLOWED_METHODS = "GET, HEAD, DELETE, OPTIONS"
_ALLOWED_HEADERS = "Range, Content-Type, If-None-Match, If-Range"
_PREFLIGHT_MAX_AGE_S = 600


class CorsPolicy:
    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(origin.rstrip("/") for origin in origins)

    def apply(self, response: Response, origin: str | None) -> None:
        """Add the CORS headers for a request from ``origin`` to ``response``."""
        # Plain header edits: response.vary parses and rebuilds the header.
        vary = response.headers.get("Vary")
        if vary is None:
            response.headers["Vary"] = "Origin"
        elif "origin" not in {name.strip().lower() for name in vary.split(",")}:
            response.headers["Vary"] = f"{vary}, Origin"
        if origin is None or origin not in self.origins:
            return
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED

    def preflight(self) -> Response:
        """Build the 204 response to an ``OPTIONS`` preflight request."""
        response = Response("", status=204)
        response.headers["Access-Control-Allow-Methods"] = _ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = _ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = str(_PREFLIGHT_MAX_AGE_S)
        return response

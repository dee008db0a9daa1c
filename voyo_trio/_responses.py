"""The JSON error body of every failing route, and the base of URLs handed out."""

from __future__ import annotations

import re
from typing import Any

from quart import Response, current_app, request

from ._services import current_services

__all__ = ["base_url", "error_response"]

# A host name, IPv4 or bracketed IPv6 address, and an optional port.
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def error_response(message: str, status: int, **extra: Any) -> Response:
    """Build ``{"error": message, ...extra}`` with ``status``."""
    body = current_app.json.dumps({"error": message, **extra})
    return Response(body, status=status, mimetype="application/json")


def base_url() -> str:
    """Return the origin for absolute URLs in responses.

    The configured public base URL wins. Otherwise the request's ``Host`` is
    used if it is a plain host and port; any other value gives relative URLs.
    """
    public_base_url = current_services().settings.public_base_url
    if public_base_url is not None:
        return public_base_url.rstrip("/")
    if _HOST.fullmatch(request.host):
        return f"{request.scheme}://{request.host}"
    return ""

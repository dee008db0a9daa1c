"""Exceptions raised by voyo-trio, one tree split by the step that failed.

::

    VoyoError
    ├── InvalidInput             400  a parameter failed validation
    ├── NotFound                 404  no such route, track or file
    ├── RateLimited              429  a client went over its budget
    ├── ExtractionError               yt-dlp could not resolve a track
    │   ├── ExtractionUnavailable 503  the track or the extractor is unavailable
    │   └── ExtractionTimeout     504  yt-dlp did not finish in time
    └── UpstreamError            502  a fetch from an upstream host failed
        ├── UpstreamConnectError 502  no connection could be made
        ├── UpstreamTimeout      504  connect or read timed out
        ├── UpstreamRefused      502  the host answered 403 or 410
        ├── UpstreamStatusError  502  the host answered another error status
        └── ForbiddenHost        502  a URL pointed at a host not on the allow-list

Each class carries its HTTP status in ``status``; the app turns any of them into
a JSON ``{"error": "..."}`` response in one error handler. httpx and yt-dlp
exceptions are converted where those libraries are called, with the original
kept as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ExtractionError",
    "ExtractionTimeout",
    "ExtractionUnavailable",
    "ForbiddenHost",
    "InvalidInput",
    "NotFound",
    "RateLimited",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamRefused",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "VoyoError",
]


class VoyoError(Exception):
    """Base class of every error that the app reports to a client."""

    status = 500
    # An expected 5xx, such as a full queue, is not logged as a failure.
    expected = False


class InvalidInput(VoyoError):
    status = 400


class NotFound(VoyoError):
    status = 404


class RateLimited(VoyoError):
    status = 429

    def __init__(self, message: str, *, retry_after_s: float, reason: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


class ExtractionError(VoyoError):
    status = 502


class ExtractionUnavailable(ExtractionError):
    status = 503


class ExtractionTimeout(ExtractionError):
    status = 504


class UpstreamError(VoyoError):
    status = 502


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamRefused(UpstreamError):
    """The upstream returned 403 or 410, because the URL expired or was revoked."""

    def __init__(self, message: str, *, upstream_status: int) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status


class UpstreamStatusError(UpstreamError):
    def __init__(self, message: str, *, upstream_status: int) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status


class ForbiddenHost(UpstreamError):
    pass

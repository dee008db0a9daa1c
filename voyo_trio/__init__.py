"""voyo-trio: a music streaming backend on Trio.

It resolves YouTube tracks with yt-dlp and proxies their audio to browsers,
with ``Range`` support, over one pooled httpx client, served by Hypercorn.
"""

from ._app import create_app
from ._errors import (
    ExtractionError,
    ExtractionTimeout,
    ExtractionUnavailable,
    ForbiddenHost,
    InvalidInput,
    NotFound,
    RateLimited,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRefused,
    UpstreamStatusError,
    UpstreamTimeout,
    VoyoError,
)
from ._ids import decode_voyo_id, encode_voyo_id, parse_track_ref, parse_video_id
from ._settings import Settings, SettingsError

__all__ = [
    "ExtractionError",
    "ExtractionTimeout",
    "ExtractionUnavailable",
    "ForbiddenHost",
    "InvalidInput",
    "NotFound",
    "RateLimited",
    "Settings",
    "SettingsError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamRefused",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "VoyoError",
    "create_app",
    "decode_voyo_id",
    "encode_voyo_id",
    "parse_track_ref",
    "parse_video_id",
]

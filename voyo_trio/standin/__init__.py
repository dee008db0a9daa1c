"""Local stand-in for YouTube, served over real HTTPS on loopback.

Tests, the demo and benchmarks cannot reach YouTube, so StandIn plays its
part: watch pages that yt-dlp's generic extractor resolves into three
audio-only formats, and a googlevideo-like media host with signed, expiring,
revocable URLs, byte ranges and injectable faults (delays, error statuses,
resets and stalls). The server is written on trio and h11 directly so that
faults can act on the socket itself.
"""

from ._audio import AUDIO_FORMATS, QUALITIES, AudioFormat
from ._catalog import CATALOG, Track
from ._faults import Fault
from ._media import CDN_HEADERS
from ._server import StandIn
from ._stats import StandInStats

__all__ = [
    "AUDIO_FORMATS",
    "CATALOG",
    "CDN_HEADERS",
    "QUALITIES",
    "AudioFormat",
    "Fault",
    "StandIn",
    "StandInStats",
    "Track",
]

"""Counters that tests and benchmarks read to check what reached the stand-in."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class StandInStats:
    """Request and connection counters of one StandIn.

    ``connections_accepted`` counts accepted TCP connections, including those
    whose TLS handshake then fails. ``media_bytes_sent`` counts audio body
    bytes only, not the bodies of error responses.
    """

    connections_accepted: int = 0
    open_connections: int = 0
    watch_requests: Counter[str] = field(default_factory=Counter)
    media_requests: Counter[str] = field(default_factory=Counter)
    search_requests: int = 0
    # Keyed by "VIDEO_ID/NAME", such as "Qm3vX7bL2pA/hqdefault".
    thumbnail_requests: Counter[str] = field(default_factory=Counter)
    media_bytes_sent: int = 0
    # The headers of the latest media request, with lower-case names.
    last_media_headers: dict[str, str] = field(default_factory=dict)

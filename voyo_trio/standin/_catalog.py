"""Made-up tracks that the stand-in serves in place of YouTube videos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Track:
    """One catalog entry, addressed by an 11-character YouTube-style video id."""

    video_id: str
    title: str
    artist: str
    duration_s: int


# Durations stay within 10..40 s so the generated WAV files stay small. Two
# titles are non-ASCII and two contain HTML metacharacters, so pages and
# clients are exercised on escaping and UTF-8.
CATALOG: tuple[Track, ...] = (
    Track("Qm3vX7bL2pA", "Paper Lanterns", "The Quiet Orbits", 24),
    Track("Zr8_kT1wYdE", "Saltwater Radio", "Mira Okonkwo", 31),
    Track("a9Lp-3sJxQo", "夜明けのプール", "星野トリオ", 18),
    Track("Kd2mWq7Rv0c", "Café Lumière", "Élodie Marchetti", 27),
    Track("Vb5nE_8hTzu", "Granite Sky", "Northbound Static", 35),
    Track("p0Xc4Fy9GwL", "Slow Motion Summer", "Juno & the Lowlights", 12),
    Track("Hj7tR2uNe-k", "Twelve Bar Comet", "Delta Fuzz Union", 40),
    Track("Ws1oB6gMq3Y", "Glass Elevator", "Pria Venkataraman", 22),
    Track("e4Ui-9ZaPs_", "Coastline <Live>", "Harbor Lights", 15),
    Track("Ty6fC0vKl8D", "Moth Parade", "Ossian Bell", 29),
    Track("Nq9rL3dHx2m", "Lowercase Weather", "The Tin Almanac", 10),
    Track("Bg0sY5jPw7r", "Night Bus Hymn", "Casimir Oduya", 33),
)

_TRACKS_BY_ID: dict[str, Track] = {track.video_id: track for track in CATALOG}


def find_track(video_id: str) -> Track | None:
    """Return the catalog track with this video id, or None if there is none."""
    return _TRACKS_BY_ID.get(video_id)


def require_track(video_id: str) -> Track:
    """Return the catalog track with this video id or raise ValueError."""
    track = find_track(video_id)
    if track is None:
        raise ValueError(f"video id {video_id!r} is not in the stand-in CATALOG")
    return track


class Catalog:
    """Tracks that one StandIn serves, addressed by video id."""

    def __init__(self, tracks: Sequence[Track] = CATALOG) -> None:
        self.tracks = tuple(tracks)
        self._by_id = {track.video_id: track for track in self.tracks}
        if len(self._by_id) != len(self.tracks):
            raise ValueError("catalog tracks must have distinct video ids")

    def find(self, video_id: str) -> Track | None:
        """Return the track with this video id, or None if there is none."""
        return self._by_id.get(video_id)

    def require(self, video_id: str) -> Track:
        """Return the track with this video id or raise ValueError."""
        track = self.find(video_id)
        if track is None:
            raise ValueError(f"video id {video_id!r} is not in the stand-in catalog")
        return track

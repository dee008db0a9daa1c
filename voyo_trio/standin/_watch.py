"""Watch pages in the HTML5 media form that yt-dlp's generic extractor reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from ._catalog import Track


@dataclass(frozen=True)
class Source:
    """One ``<source>`` element: its absolute URL and bit rate label."""

    url: str
    label: str


def render_watch_page(track: Track, sources: Sequence[Source]) -> str:
    """Render the page of a track with one ``<source>`` per quality.

    yt-dlp's generic extractor turns each ``<source>`` of an ``<audio>``
    element into an audio-only format and reads ``NNkbps`` in the ``label``
    attribute into the format's ``tbr``.
    """
    title, artist = escape(track.title), escape(track.artist)
    source_lines = "\n".join(_render_source(source) for source in sources)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{artist} - {title}</title>
<meta property="og:title" content="{title}">
<meta property="og:type" content="music.song">
</head>
<body>
<h1>{title}</h1>
<p class="artist">{artist}</p>
<audio controls preload="none">
{source_lines}
</audio>
</body>
</html>
"""


def _render_source(source: Source) -> str:
    url, label = escape(source.url), escape(source.label)
    return f'<source src="{url}" type="audio/wav" label="{label}">'


def render_not_found_page(video_id: str) -> str:
    """Render the 404 page for a video id that is not in the catalog."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Video unavailable</title></head>
<body><p>Video {escape(video_id)} is not available.</p></body>
</html>
"""

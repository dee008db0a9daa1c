"""An innertube-shaped search response over the catalog.

YouTube answers a search with results nested in section and rich-item
wrappers, in more than one renderer shape, mixed with items that are not
playable videos. The stand-in does the same, so the backend's parser meets
every shape it must read and every kind of item it must skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._catalog import CATALOG, Track

__all__ = ["matching_tracks", "search_response"]


def matching_tracks(query: str) -> list[Track]:
    """Return catalog tracks whose title or artist contains every query word."""
    words = query.casefold().split()
    return [
        track
        for track in CATALOG
        if all(word in f"{track.title} {track.artist}".casefold() for word in words)
    ]


def _duration_text(seconds: int) -> str:
    return f"{seconds // 60}:{seconds % 60:02d}"


def _views(track: Track) -> int:
    # A stable, made-up view count per track.
    return sum(ord(char) for char in track.video_id) * 997


def video_renderer(track: Track) -> dict[str, Any]:
    """Render a track in the classic ``videoRenderer`` shape."""
    return {
        "videoRenderer": {
            "videoId": track.video_id,
            "title": {"runs": [{"text": track.title}]},
            "ownerText": {"runs": [{"text": track.artist}]},
            "lengthText": {"simpleText": _duration_text(track.duration_s)},
            "viewCountText": {"simpleText": f"{_views(track):,} views"},
            "navigationEndpoint": {"watchEndpoint": {"videoId": track.video_id}},
        }
    }


def lockup_view_model(track: Track) -> dict[str, Any]:
    """Render a track in the newer ``lockupViewModel`` shape."""
    badge = {"thumbnailBadgeViewModel": {"text": _duration_text(track.duration_s)}}
    rows = [
        {"metadataParts": [{"text": {"content": track.artist}}]},
        {
            "metadataParts": [
                {"text": {"content": f"{_views(track) / 1000:.1f}K views"}},
                {"text": {"content": "2 years ago"}},
            ]
        },
    ]
    return {
        "lockupViewModel": {
            "contentId": track.video_id,
            "contentType": "LOCKUP_CONTENT_TYPE_VIDEO",
            "contentImage": {
                "thumbnailViewModel": {
                    "overlays": [
                        {"thumbnailOverlayBadgeViewModel": {"thumbnailBadges": [badge]}}
                    ]
                }
            },
            "metadata": {
                "lockupMetadataViewModel": {
                    "title": {"content": track.title},
                    "metadata": {"contentMetadataViewModel": {"metadataRows": rows}},
                }
            },
        }
    }


def _noise(query: str) -> list[dict[str, Any]]:
    """Items a real results page carries that are not playable videos."""
    return [
        {
            "channelRenderer": {
                "channelId": "UCstandin00000000000000",
                "title": {"simpleText": query},
            }
        },
        {"adSlotRenderer": {"videoId": "AdAdAdAdAd0"}},
        {
            "reelShelfRenderer": {
                "items": [{"reelItemRenderer": {"videoId": "ShortShort1"}}]
            }
        },
        {
            "lockupViewModel": {
                "contentId": "PLstandinplaylist",
                "contentType": "LOCKUP_CONTENT_TYPE_PLAYLIST",
                "metadata": {"lockupMetadataViewModel": {"title": {"content": query}}},
            }
        },
    ]


def _item(index: int, track: Track) -> dict[str, Any]:
    # Alternate shapes and wrappers, as YouTube's experiments do.
    if index % 3 == 1:
        return lockup_view_model(track)
    if index % 3 == 2:
        return {"richItemRenderer": {"content": video_renderer(track)}}
    return video_renderer(track)


def search_response(query: str, tracks: Sequence[Track]) -> dict[str, Any]:
    """Build the whole response for ``tracks``, noise and continuation included."""
    contents: list[dict[str, Any]] = [_item(i, track) for i, track in enumerate(tracks)]
    contents[1:1] = _noise(query)
    continuation = {
        "continuationItemRenderer": {"trigger": "CONTINUATION_TRIGGER_ON_ITEM_SHOWN"}
    }
    section_list = {
        "contents": [{"itemSectionRenderer": {"contents": contents}}, continuation]
    }
    return {
        "estimatedResults": str(len(tracks)),
        "contents": {
            "twoColumnSearchResultsRenderer": {
                "primaryContents": {"sectionListRenderer": section_list}
            }
        },
    }

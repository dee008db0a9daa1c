"""Search parsing, /search and /api/search, and cover art with its cache."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import trio

from voyo_trio import Settings, decode_voyo_id
from voyo_trio._search import (
    SearchResult,
    parse_count,
    parse_duration,
    parse_search_query,
    parse_search_response,
)
from voyo_trio._thumbnails import ThumbnailQuality, etag_matches, fallback_names
from voyo_trio.standin import CATALOG, StandIn
from voyo_trio.standin._thumbs import has_thumbnail, thumbnail_bytes

from .conftest import STEP_TIMEOUT_S, RunningApp, start_app
from .test_stream import assert_json_error


def video_renderer(video_id: str, title: str, **extra: Any) -> dict[str, Any]:
    body = {
        "videoId": video_id,
        "title": {"runs": [{"text": title}]},
        "ownerText": {"runs": [{"text": "Some Artist"}]},
        "lengthText": {"simpleText": "3:45"},
        "viewCountText": {"simpleText": "1,234 views"},
    }
    body.update(extra)
    return {"videoRenderer": body}


def lockup(
    video_id: str, title: str, badge: str = "1:02:03", kind: str = "VIDEO"
) -> dict[str, Any]:
    return {
        "lockupViewModel": {
            "contentId": video_id,
            "contentType": f"LOCKUP_CONTENT_TYPE_{kind}",
            "contentImage": {
                "thumbnailViewModel": {
                    "overlays": [
                        {
                            "thumbnailOverlayBadgeViewModel": {
                                "thumbnailBadges": [
                                    {"thumbnailBadgeViewModel": {"text": badge}}
                                ]
                            }
                        }
                    ]
                }
            },
            "metadata": {
                "lockupMetadataViewModel": {
                    "title": {"content": title},
                    "metadata": {
                        "contentMetadataViewModel": {
                            "metadataRows": [
                                {
                                    "metadataParts": [
                                        {"text": {"content": "Lockup Artist"}}
                                    ]
                                },
                                {
                                    "metadataParts": [
                                        {"text": {"content": "1.2M views"}},
                                        {"text": {"content": "3 years ago"}},
                                    ]
                                },
                            ]
                        }
                    },
                }
            },
        }
    }


def wrap_in_sections(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "contents": {
            "twoColumnSearchResultsRenderer": {
                "primaryContents": {
                    "sectionListRenderer": {
                        "contents": [{"itemSectionRenderer": {"contents": list(items)}}]
                    }
                }
            }
        }
    }


PLAIN = video_renderer("aaaaaaaaaaa", "Plain")
PARSER_CASES: list[tuple[str, Any, list[str]]] = [
    ("video renderer", wrap_in_sections(PLAIN), ["aaaaaaaaaaa"]),
    (
        "lockup view model",
        wrap_in_sections(lockup("bbbbbbbbbbb", "Lockup")),
        ["bbbbbbbbbbb"],
    ),
    (
        "rich item wrapper",
        {"contents": [{"richItemRenderer": {"content": PLAIN}}]},
        ["aaaaaaaaaaa"],
    ),
    (
        "mixed shapes keep order",
        wrap_in_sections(lockup("bbbbbbbbbbb", "L"), PLAIN),
        ["bbbbbbbbbbb", "aaaaaaaaaaa"],
    ),
    (
        "channel skipped",
        wrap_in_sections({"channelRenderer": {"channelId": "UC1"}}, PLAIN),
        ["aaaaaaaaaaa"],
    ),
    (
        "playlist skipped",
        wrap_in_sections(
            {"playlistRenderer": {"playlistId": "PL1", "videos": [PLAIN]}},
            lockup("PLxxxxxxxxx", "A playlist", kind="PLAYLIST"),
        ),
        [],
    ),
    (
        "shelf of shorts skipped",
        wrap_in_sections(
            {"reelShelfRenderer": {"items": [video_renderer("ccccccccccc", "S")]}}
        ),
        [],
    ),
    (
        "short by endpoint skipped",
        wrap_in_sections(
            video_renderer(
                "ddddddddddd", "Short", navigationEndpoint={"reelWatchEndpoint": {}}
            )
        ),
        [],
    ),
    ("ad skipped", wrap_in_sections({"adSlotRenderer": {"content": PLAIN}}), []),
    (
        "continuation skipped",
        {"contents": [{"continuationItemRenderer": {"continuationEndpoint": {}}}]},
        [],
    ),
    ("duplicates dropped", wrap_in_sections(PLAIN, PLAIN), ["aaaaaaaaaaa"]),
    ("invalid id dropped", wrap_in_sections(video_renderer("short", "X")), []),
    ("unknown structure", {"unexpected": {"shape": [1, 2, 3]}}, []),
    ("not even a dict", ["a", 1, None], []),
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [c[1:] for c in PARSER_CASES],
    ids=[c[0] for c in PARSER_CASES],
)
def test_parser_shapes(data: Any, expected: list[str]) -> None:
    assert [r.video_id for r in parse_search_response(data)] == expected


def test_parser_video_renderer_fields() -> None:
    (result,) = parse_search_response(wrap_in_sections(PLAIN))
    assert result == SearchResult("aaaaaaaaaaa", "Plain", "Some Artist", 225, 1234)


def test_parser_lockup_fields() -> None:
    (result,) = parse_search_response(wrap_in_sections(lockup("bbbbbbbbbbb", "Lockup")))
    assert result == SearchResult(
        "bbbbbbbbbbb", "Lockup", "Lockup Artist", 3723, 1_200_000
    )


def test_parser_live_items_have_no_duration() -> None:
    live_renderer = video_renderer(
        "eeeeeeeeeee",
        "Live radio",
        lengthText=None,
        viewCountText={"runs": [{"text": "1,024"}, {"text": " watching"}]},
        badges=[{"metadataBadgeRenderer": {"style": "BADGE_STYLE_TYPE_LIVE_NOW"}}],
    )
    live_lockup = lockup("fffffffffff", "Live lockup", badge="LIVE")
    results = parse_search_response(wrap_in_sections(live_renderer, live_lockup))
    assert [r.duration_s for r in results] == [None, None]


def test_parser_keeps_unicode_titles() -> None:
    titles = ["夜明けのプール", "Café Lumière", "Кино — Группа крови", "🎵 ✨"]
    items = [video_renderer(f"{i:011d}", title) for i, title in enumerate(titles)]
    assert [r.title for r in parse_search_response(wrap_in_sections(*items))] == titles


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3:45", 225),
        ("0:07", 7),
        ("1:02:03", 3723),
        ("10:00:00", 36000),
        ("LIVE", None),
        ("", None),
        (None, None),
        ("1:2:3:4", None),
    ],
)
def test_parse_duration(text: str | None, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("1,234 views", 1234),
        ("1.2M views", 1_200_000),
        ("3.4K views", 3400),
        ("2B views", 2_000_000_000),
        ("No views", 0),
        ("1 view", 1),
        ("", None),
        ("views", None),
    ],
)
def test_parse_count(text: str, count: int | None) -> None:
    assert parse_count(text) == count


@pytest.mark.parametrize(
    ("query", "limit", "expected"),
    [
        ("  hello  ", None, ("hello", 10)),
        ("x", "0", ("x", 1)),
        ("x", "500", ("x", 50)),
        ("x", "7", ("x", 7)),
    ],
)
def test_search_query_clamps(
    query: str, limit: str | None, expected: tuple[str, int]
) -> None:
    assert parse_search_query(query, limit) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/search",
        "/search?q=",
        "/search?q=%20%20",
        "/search?q=" + "a" * 201,
        "/search?q=a&limit=ten",
        "/api/search?q=a&limit=1.5",
    ],
)
async def test_search_input_is_400(client: httpx.AsyncClient, path: str) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(path)
    assert_json_error(response, 400)


async def test_search_finds_catalog_track(
    client: httpx.AsyncClient, running: RunningApp
) -> None:
    track = CATALOG[3]
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/search", params={"q": track.title})
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["id"] == track.video_id
    assert result["title"] == track.title
    assert result["artist"] == track.artist
    assert result["duration"] == track.duration_s
    assert isinstance(result["views"], int)
    assert result["thumbnail"] == f"{running.url}/thumbnail?id={track.video_id}"


async def test_search_limit_and_cache(
    client: httpx.AsyncClient, standin: StandIn
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        first = await client.get("/search", params={"q": "a", "limit": "3"})
        second = await client.get("/search", params={"q": "a", "limit": "3"})
    assert len(first.json()["results"]) == 3
    assert second.json() == first.json()
    assert standin.stats.search_requests == 1


async def test_api_search_round_trips_voyo_id(
    client: httpx.AsyncClient, standin: StandIn, running: RunningApp
) -> None:
    track = CATALOG[0]
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/api/search", params={"q": track.title.split()[0]})
        (result,) = response.json()["results"]
        assert "id" not in result
        assert decode_voyo_id(result["voyoId"]) == track.video_id
        assert result["thumbnail"] == f"{running.url}/cdn/art/{result['voyoId']}"
        art = await client.get(result["thumbnail"])
        media = await client.get(
            f"/cdn/stream/{result['voyoId']}", headers={"Range": "bytes=0-3"}
        )
    assert art.status_code == 200
    assert art.headers["content-type"] == "image/jpeg"
    assert art.content.startswith(b"\xff\xd8")
    assert media.status_code == 206
    assert media.content == standin.audio_bytes(track.video_id, "high")[:4]


async def test_search_falls_back_when_innertube_fails(
    client: httpx.AsyncClient,
    running: RunningApp,
    standin: StandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # yt-dlp's ytsearch needs YouTube itself, so offline the fallback is
    # replaced at its boundary: the function that would run ``ytsearchN:``.
    calls: list[tuple[str, int]] = []

    def fake_ytsearch(query: str, limit: int) -> list[dict[str, Any]]:
        calls.append((query, limit))
        return [
            {
                "id": "dQw4w9WgXcQ",
                "title": "Fallback hit",
                "channel": "Fallback Artist",
                "duration": 212.0,
                "view_count": 5,
            }
        ]

    running.services.searcher.fallback = fake_ytsearch
    standin.search_status = 500
    caplog.set_level(logging.WARNING, logger="voyo_trio")
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/search", params={"q": "anything", "limit": "4"})
    assert response.status_code == 200
    assert calls == [("anything", 4)]
    (result,) = response.json()["results"]
    assert result["id"] == "dQw4w9WgXcQ"
    assert result["duration"] == 212
    assert any("falling back to yt-dlp" in r.getMessage() for r in caplog.records)


async def test_search_both_failing_is_502(
    client: httpx.AsyncClient, standin: StandIn
) -> None:
    standin.search_status = 503
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/search", params={"q": "anything"})
    assert_json_error(response, 502)


def test_thumbnail_fallback_order() -> None:
    assert fallback_names(ThumbnailQuality.MAX)[0] == "maxresdefault"
    assert fallback_names(ThumbnailQuality.HIGH) == (
        "hqdefault",
        "mqdefault",
        "default",
    )
    assert fallback_names(ThumbnailQuality.DEFAULT) == ("default",)


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ("*", True),
        ('"x"', False),
        (None, False),
    ],
)
def test_etag_matching(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches


async def test_thumbnail_falls_back_from_missing_size(
    client: httpx.AsyncClient, standin: StandIn
) -> None:
    track = next(t for t in CATALOG if not has_thumbnail(t, "maxresdefault"))
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/thumbnail", params={"id": track.video_id, "quality": "max"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert standin.stats.thumbnail_requests[f"{track.video_id}/maxresdefault"] == 1
    assert standin.stats.thumbnail_requests[f"{track.video_id}/sddefault"] == 1
    assert standin.stats.thumbnail_requests[f"{track.video_id}/hqdefault"] == 1
    assert (
        "server" not in response.headers or "standin" not in response.headers["server"]
    )


async def test_thumbnail_decodes_compressed_image(
    client: httpx.AsyncClient, standin: StandIn
) -> None:
    track = CATALOG[0]
    standin.gzip_bodies = True
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/thumbnail", params={"id": track.video_id, "quality": "default"}
        )
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(response.content))
    assert response.content == thumbnail_bytes(track, "default")


async def test_thumbnail_unknown_track_is_404_json(client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/thumbnail", params={"id": "zzzzzzzzzzz"})
        again = await client.get("/thumbnail", params={"id": "zzzzzzzzzzz"})
    assert_json_error(response, 404)
    assert_json_error(again, 404)


async def test_thumbnail_if_none_match_is_304(client: httpx.AsyncClient) -> None:
    path = f"/cdn/art/{CATALOG[1].video_id}"
    with trio.fail_after(STEP_TIMEOUT_S):
        first = await client.get(path)
        etag = first.headers["etag"]
        second = await client.get(path, headers={"If-None-Match": etag})
    assert second.status_code == 304
    assert second.content == b""
    assert second.headers["etag"] == etag


async def test_thumbnail_concurrent_misses_fetch_once(
    client: httpx.AsyncClient, running: RunningApp, standin: StandIn
) -> None:
    track = next(t for t in CATALOG if has_thumbnail(t, "hqdefault"))
    statuses: list[int] = []

    async def ask() -> None:
        response = await client.get("/thumbnail", params={"id": track.video_id})
        statuses.append(response.status_code)

    with trio.fail_after(STEP_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(ask)
    assert statuses == [200] * 50
    assert standin.stats.thumbnail_requests[f"{track.video_id}/hqdefault"] == 1
    assert running.services.thumbnails.upstream_fetches == 1


async def test_thumbnail_cache_bounded_by_count(
    settings: Settings, standin: StandIn
) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(thumbnail_cache_entries=2), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                for track in CATALOG[:3]:
                    await http.get(
                        "/thumbnail",
                        params={"id": track.video_id, "quality": "default"},
                    )
                health = (await http.get("/health")).json()
                await http.get(
                    "/thumbnail",
                    params={"id": CATALOG[0].video_id, "quality": "default"},
                )
        shutdown.set()
    thumbnails = health["caches"]["thumbnails"]
    assert thumbnails["size"] == 2
    assert thumbnails["evictions"] == 1
    assert thumbnails["misses"] == 3
    assert standin.stats.thumbnail_requests[f"{CATALOG[0].video_id}/default"] == 2


async def test_thumbnail_cache_bounded_by_bytes(
    settings: Settings, standin: StandIn
) -> None:
    shutdown = trio.Event()
    budget = 12_000
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(thumbnail_cache_bytes=budget), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                for track in CATALOG[:6]:
                    await http.get(
                        "/thumbnail", params={"id": track.video_id, "quality": "medium"}
                    )
                health = (await http.get("/health")).json()
        shutdown.set()
    thumbnails = health["caches"]["thumbnails"]
    assert 0 < thumbnails["bytes"] <= budget
    assert thumbnails["evictions"] >= 1
    assert thumbnails["size"] < 6

"""HTTP routes for search and cover art, compatible with the Node server's."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, request

from ._ids import encode_voyo_id, parse_track_ref, parse_video_id
from ._request_limits import extraction_charge
from ._responses import base_url
from ._search import SearchResult, parse_search_query
from ._services import current_services
from ._thumbnails import Thumbnail, etag_matches, parse_thumbnail_quality

__all__ = ["search_blueprint"]

search_blueprint = Blueprint("voyo_search", __name__)

# Browsers may keep cover art for an hour; it rarely changes.
_ART_CACHE_CONTROL = "public, max-age=3600"


async def _search() -> list[SearchResult]:
    voyo = current_services()
    query, limit = parse_search_query(request.args.get("q"), request.args.get("limit"))
    return await voyo.searcher.search(
        voyo.upstream, query, limit, before_fallback=extraction_charge(voyo)
    )


@search_blueprint.get("/search")
async def search() -> dict[str, Any]:
    base = base_url()
    results = await _search()
    return {
        "results": [
            result.as_json(f"{base}/thumbnail?{urlencode({'id': result.video_id})}")
            for result in results
        ]
    }


@search_blueprint.get("/api/search")
async def api_search() -> dict[str, Any]:
    base = base_url()
    results = []
    for result in await _search():
        voyo_id = encode_voyo_id(result.video_id)
        item = result.as_json(f"{base}/cdn/art/{voyo_id}")
        del item["id"]
        results.append({"voyoId": voyo_id, **item})
    return {"results": results}


@search_blueprint.get("/thumbnail")
async def thumbnail() -> Response:
    return await _art_response(parse_video_id(request.args.get("id"), name="id"))


@search_blueprint.get("/cdn/art/<track>")
async def cdn_art(track: str) -> Response:
    return await _art_response(parse_track_ref(track))


async def _art_response(video_id: str) -> Response:
    voyo = current_services()
    quality = parse_thumbnail_quality(request.args.get("quality"))
    image = await voyo.thumbnails.get(voyo.upstream, video_id, quality, voyo.nursery)
    if etag_matches(request.headers.get("If-None-Match"), image.etag):
        response = Response(b"", status=304)
        # A 304 carries no body, so no representation headers either.
        del response.headers["Content-Type"]
        del response.headers["Content-Length"]
    else:
        response = _image_response(image)
    response.headers["ETag"] = image.etag
    response.headers["Cache-Control"] = _ART_CACHE_CONTROL
    return response


def _image_response(image: Thumbnail) -> Response:
    response = Response(image.content, status=200, content_type=image.content_type)
    response.headers["Content-Length"] = str(len(image.content))
    return response

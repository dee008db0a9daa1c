"""HTTP routes of the offline library, compatible with the Node server's."""

from __future__ import annotations

import email.utils
import logging
from typing import Any

import trio
from quart import Blueprint, Response, g, request

from ._errors import NotFound
from ._files import FileBody, RangeNotSatisfiable, if_range_allows, parse_byte_range
from ._ids import parse_video_id
from ._library import StoredTrack
from ._request_limits import extraction_charge
from ._responses import error_response
from ._services import current_services

__all__ = ["library_blueprint", "library_url"]

logger = logging.getLogger(__name__)

library_blueprint = Blueprint("voyo_library", __name__)

# How long DELETE waits for a running job to stop before responding.
_CANCEL_WAIT_S = 10.0


def library_url(base: str, track: StoredTrack) -> str:
    return f"{base}/downloads/{track.path.name}"


@library_blueprint.get("/download")
async def download() -> tuple[dict[str, Any], int]:
    voyo = current_services()
    video_id = g.video_id = parse_video_id(request.args.get("v"))
    stored = await trio.to_thread.run_sync(voyo.library.find, video_id)
    if stored is not None:
        return _done_json(stored, already_exists=True), 200
    if voyo.downloads.running(video_id) is None:
        extraction_charge(voyo)()
    job = voyo.downloads.start(video_id, voyo.nursery)
    with trio.move_on_after(voyo.settings.download_wait_s):
        await job.done.wait()
    if not job.done.is_set():
        return {"success": False, "status": "downloading", "job": job.as_json()}, 202
    if job.track is not None:
        return _done_json(job.track, already_exists=False), 200
    if job.error is not None:
        raise job.error
    return {"success": False, "status": job.state.value, "job": job.as_json()}, 409


def _done_json(track: StoredTrack, *, already_exists: bool) -> dict[str, Any]:
    return {
        "success": True,
        "path": f"/downloads/{track.path.name}",
        "alreadyExists": already_exists,
        "size": track.size_bytes,
        "format": track.ext,
    }


@library_blueprint.delete("/download")
async def delete_download() -> dict[str, Any]:
    voyo = current_services()
    video_id = g.video_id = parse_video_id(request.args.get("v"))
    job = voyo.downloads.running(video_id)
    if job is not None:
        await voyo.downloads.cancel(job, _CANCEL_WAIT_S)
    deleted = await trio.to_thread.run_sync(voyo.library.delete, video_id)
    if job is None and not deleted:
        raise NotFound(f"track {video_id} is not in the library")
    return {"success": True, "cancelled": job is not None, "deleted": deleted}


@library_blueprint.get("/downloaded")
async def downloaded() -> dict[str, Any]:
    voyo = current_services()
    tracks = await trio.to_thread.run_sync(voyo.library.tracks)
    return {
        "downloads": [track.video_id for track in tracks],
        "tracks": [track.as_json() for track in tracks],
        "jobs": [job.as_json() for job in voyo.downloads.jobs.values()],
    }


@library_blueprint.route("/downloads/<name>", methods=["GET", "HEAD"])
async def stored_file(name: str) -> Response:
    voyo = current_services()
    track = await trio.to_thread.run_sync(voyo.library.file_for, name)
    g.video_id = track.video_id
    stat = await trio.to_thread.run_sync(track.path.stat)
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": track.content_type,
        "ETag": etag,
        "Last-Modified": last_modified,
    }
    range_header = request.headers.get("Range")
    if not if_range_allows(request.headers.get("If-Range"), etag, last_modified):
        range_header = None
    try:
        byte_range = parse_byte_range(range_header, stat.st_size)
    except RangeNotSatisfiable:
        response = error_response(f"requested range is past the end of {name}", 416)
        response.headers["Content-Range"] = f"bytes */{stat.st_size}"
        return response
    await trio.to_thread.run_sync(voyo.library.mark_played, track)
    return _file_response(track, stat.st_size, byte_range, headers)


def _file_response(
    track: StoredTrack, size: int, byte_range: Any, headers: dict[str, str]
) -> Response:
    if byte_range is None:
        offset, length, status = 0, size, 200
    else:
        offset, length, status = byte_range.first, byte_range.length, 206
        headers["Content-Range"] = byte_range.content_range(size)
    if request.method == "HEAD":
        response = Response(b"", status=status, headers=headers)
    else:
        response = Response(
            FileBody(track.path, offset, length), status=status, headers=headers
        )
    # Set last: Quart sets the length of a bytes body itself, 0 for HEAD.
    response.headers["Content-Length"] = str(length)
    response.timeout = None
    return response

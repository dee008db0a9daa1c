"""HTTP routes of the offline library, compatible with the Node server's."""

from __future__ import annotations

import email.utils
import logging
import os
from typing import Any, cast

import trio
from quart import Blueprint, Response, g, request

from ._errors import NotFound
from ._files import FileBody, RangeNotSatisfiable, if_range_allows, parse_byte_range
from ._ids import parse_video_id
from ._library import StoredTrack
from ._proxy import SCOPE_BODIES
from ._request_limits import extraction_charge
from ._responses import error_response
from ._services import Services, current_services

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
    if request.method == "HEAD":
        # A HEAD request only checks the library and starts no download.
        raise NotFound(f"track {video_id} is not in the library")
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
    # A job stuck in a network read stops only when that read times out.
    stopped = job is not None and job.done.is_set()
    result: dict[str, Any] = {"success": True, "cancelled": stopped, "deleted": deleted}
    if job is not None and not stopped:
        result["state"] = "cancelling"
    return result


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
    try:
        file = await trio.open_file(track.path, "rb")
    except FileNotFoundError:
        raise NotFound(f"{name} is not in the library") from None
    try:
        return await _file_response(voyo, track, file)
    except BaseException:
        with trio.CancelScope(shield=True):
            await file.aclose()
        raise


async def _file_response(voyo: Services, track: StoredTrack, file: Any) -> Response:
    stat = os.fstat(file.fileno())
    size = stat.st_size
    headers = _validator_headers(track, stat)
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if not if_range_allows(if_range, headers["ETag"], headers["Last-Modified"]):
        range_header = None

    try:
        byte_range = parse_byte_range(range_header, size)
    except RangeNotSatisfiable:
        await file.aclose()
        response = error_response(
            f"requested range is past the end of {track.path.name}", 416
        )
        response.headers["Content-Range"] = f"bytes */{size}"
        return response
    await trio.to_thread.run_sync(voyo.library.mark_played, track)

    offset, length, status = 0, size, 200
    if byte_range is not None:
        offset, length, status = byte_range.first, byte_range.length, 206
        headers["Content-Range"] = byte_range.content_range(size)
    if request.method == "HEAD":
        await file.aclose()
        response = Response(b"", status=status, headers=headers)
    else:
        body = FileBody(file, track.path, offset, length)
        # Closed when the request ends, even if the body is never iterated.
        cast(dict[str, Any], request.scope).setdefault(SCOPE_BODIES, []).append(body)
        response = Response(body, status=status, headers=headers)
    # Set last: Quart sets the length of a bytes body itself, 0 for HEAD.
    response.headers["Content-Length"] = str(length)
    response.timeout = None
    return response


def _validator_headers(track: StoredTrack, stat: os.stat_result) -> dict[str, str]:
    return {
        "Accept-Ranges": "bytes",
        "Content-Type": track.content_type,
        "ETag": f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"',
        "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
    }

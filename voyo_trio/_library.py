"""The offline library: downloaded tracks kept in one folder.

The folder is the whole state: ``<id>.<ext>`` files with a ``<id>.json``
record beside each, so the library survives restarts. A download writes under
a ``.partial-`` name and is renamed into place only when complete, so nothing
half-written is ever served. The access time of a file is set each time it
is played and orders eviction when the library is over its size limit.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import InvalidInput, NotFound, VoyoError

__all__ = ["AUDIO_TYPES", "Library", "LibraryError", "StoredTrack"]

logger = logging.getLogger(__name__)

# Containers the library stores, with the Content-Type each is served as.
AUDIO_TYPES = {
    "webm": "audio/webm",
    "weba": "audio/webm",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "flac": "audio/flac",
}
PARTIAL_PREFIX = ".partial-"
_TRACK_FILE = re.compile(r"([A-Za-z0-9_-]{11})\.([a-z0-9]{1,5})")


class LibraryError(VoyoError):
    """The library folder cannot be written: not writable, or the disk is full."""

    status = 507


@dataclass(frozen=True)
class StoredTrack:
    video_id: str
    path: Path
    ext: str
    size_bytes: int
    last_played: float
    title: str | None
    artist: str | None

    @property
    def content_type(self) -> str:
        return AUDIO_TYPES[self.ext]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.video_id,
            "file": self.path.name,
            "format": self.ext,
            "size": self.size_bytes,
            "title": self.title,
            "artist": self.artist,
        }


class Library:
    """List, find, add, delete and evict the tracks in one folder."""

    def __init__(self, folder: Path, *, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    def prepare(self) -> None:
        """Create the folder, check it is writable, drop partial leftovers.

        Raises LibraryError with the reason when the folder is not usable.
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f"{PARTIAL_PREFIX}probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise LibraryError(
                f"library folder {str(self.folder)!r} is not writable: {error.strerror}"
            ) from error
        removed = self.remove_partials()
        if removed:
            logger.info("removed %d partial downloads left by an earlier run", removed)

    def remove_partials(self, video_id: str | None = None) -> int:
        """Delete ``.partial-`` files, of one track or of all."""
        prefix = PARTIAL_PREFIX + (video_id or "")
        removed = 0
        for path in list(self.folder.iterdir()):
            if path.name.startswith(prefix):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def partial_template(self, video_id: str, job_token: str) -> str:
        """Return the yt-dlp output template of a job's partial file."""
        return str(self.folder / f"{PARTIAL_PREFIX}{video_id}-{job_token}.%(ext)s")

    def tracks(self) -> list[StoredTrack]:
        """Return every complete track, least recently played first."""
        found = [self._stored(path, match) for path, match in self._track_files()]
        return sorted((t for t in found if t is not None), key=lambda t: t.last_played)

    def find(self, video_id: str) -> StoredTrack | None:
        """Return the stored track of ``video_id``, looking at its files only."""
        for ext in AUDIO_TYPES:
            path = self.folder / f"{video_id}.{ext}"
            match = _TRACK_FILE.fullmatch(path.name)
            if match is not None and path.is_file():
                return self._stored(path, match)
        return None

    def file_for(self, name: str) -> StoredTrack:
        """Return the track stored as ``name`` (``<id>.<ext>``), checked to be
        a plain file inside the folder."""
        match = _TRACK_FILE.fullmatch(name)
        if match is None or match.group(2) not in AUDIO_TYPES:
            raise InvalidInput(
                "invalid file name: expected <video id>.<audio extension>"
            )
        path = (self.folder / name).resolve()
        if path.parent != self.folder.resolve() or not path.is_file():
            raise NotFound(f"{name} is not in the library")
        track = self._stored(path, match)
        if track is None:
            raise NotFound(f"{name} is not in the library")
        return track

    def mark_played(self, track: StoredTrack) -> None:
        """Set the file's access time to now, keeping its modification time."""
        try:
            stat = track.path.stat()
            os.utime(track.path, ns=(time.time_ns(), stat.st_mtime_ns))
        except OSError as error:
            logger.debug("could not mark %s played: %s", track.path.name, error)

    def add(
        self, video_id: str, partial: Path, metadata: dict[str, Any]
    ) -> StoredTrack:
        """Move a complete partial file into place, evicting to fit the limit.

        On failure the library is left as it was and the partial is removed.
        """
        ext = partial.suffix.lstrip(".").lower()
        try:
            if ext not in AUDIO_TYPES:
                raise InvalidInput(
                    f"downloaded format {ext!r} is not an audio container"
                )
            size = partial.stat().st_size
            self._make_room(video_id, size)
            self._write_record(video_id, {**metadata, "format": ext})
            final = self.folder / f"{video_id}.{ext}"
            os.replace(partial, final)
        except OSError as error:
            raise _library_error(self.folder, error) from error
        finally:
            partial.unlink(missing_ok=True)
        logger.info("stored video_id=%s as %s (%d bytes)", video_id, final.name, size)
        track = self.find(video_id)
        if track is None:
            raise LibraryError(f"track {video_id} vanished right after it was stored")
        return track

    def delete(self, video_id: str) -> bool:
        """Remove a track and its record; return whether it was there."""
        track = self.find(video_id)
        if track is None:
            return False
        track.path.unlink(missing_ok=True)
        self._record_path(video_id).unlink(missing_ok=True)
        logger.info("deleted video_id=%s from the library", video_id)
        return True

    def _make_room(self, video_id: str, size: int) -> None:
        if size > self.max_bytes:
            raise LibraryError(
                f"track {video_id} ({size} bytes) is larger than the library limit"
                f" of {self.max_bytes} bytes"
            )
        others = [t for t in self.tracks() if t.video_id != video_id]
        total = sum(t.size_bytes for t in others)
        for oldest in others:
            if total + size <= self.max_bytes:
                break
            self.delete(oldest.video_id)
            total -= oldest.size_bytes
            logger.info(
                "evicted video_id=%s to make room for %s", oldest.video_id, video_id
            )

    def _track_files(self) -> list[tuple[Path, re.Match[str]]]:
        found = []
        for path in self.folder.iterdir():
            match = _TRACK_FILE.fullmatch(path.name)
            if match is not None and match.group(2) in AUDIO_TYPES and path.is_file():
                found.append((path, match))
        return found

    def _stored(self, path: Path, match: re.Match[str]) -> StoredTrack | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        record = self._read_record(match.group(1))
        return StoredTrack(
            video_id=match.group(1),
            path=path,
            ext=match.group(2),
            size_bytes=stat.st_size,
            last_played=stat.st_atime,
            title=record.get("title"),
            artist=record.get("artist"),
        )

    def _record_path(self, video_id: str) -> Path:
        return self.folder / f"{video_id}.json"

    def _read_record(self, video_id: str) -> dict[str, Any]:
        try:
            data = json.loads(self._record_path(video_id).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_record(self, video_id: str, record: dict[str, Any]) -> None:
        partial = self.folder / f"{PARTIAL_PREFIX}{video_id}.json"
        partial.write_text(json.dumps(record, ensure_ascii=False), "utf-8")
        os.replace(partial, self._record_path(video_id))


def _library_error(folder: Path, error: OSError) -> LibraryError:
    if error.errno == errno.ENOSPC:
        return LibraryError(f"the disk holding {str(folder)!r} is full")
    return LibraryError(
        f"library folder {str(folder)!r} cannot be written: {error.strerror}"
    )

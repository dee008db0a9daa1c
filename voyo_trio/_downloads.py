"""Download jobs: one per track, yt-dlp in a worker thread, progress on show.

A job runs yt-dlp behind the download limiter and writes a ``.partial-`` file
in the library folder; the library renames it into place once complete. A
job that fails or is cancelled removes its partial files, also when its
thread outlives the Trio task that started it.
"""

from __future__ import annotations

import enum
import errno
import functools
import logging
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import yt_dlp

from ._errors import VoyoError
from ._library import Library, LibraryError, StoredTrack
from ._resolver import convert_ytdlp_error, root_cause, track_title, ytdlp_params
from ._settings import Settings
from ._threads import run_in_worker

__all__ = ["DownloadJob", "Downloader", "JobState"]

logger = logging.getLogger(__name__)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _JobCancelled(Exception):
    """Raised inside yt-dlp's progress hook to stop a cancelled download."""


@dataclass
class DownloadJob:
    """One track's download; the worker thread updates the progress fields."""

    video_id: str
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    state: JobState = JobState.QUEUED
    downloaded_bytes: int = 0
    total_bytes: int | None = None
    error: VoyoError | None = None
    track: StoredTrack | None = None
    cancel_requested: bool = False
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def percent(self) -> float | None:
        if not self.total_bytes:
            return None
        return round(min(100.0, 100.0 * self.downloaded_bytes / self.total_bytes), 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.video_id,
            "state": self.state.value,
            "bytes": self.downloaded_bytes,
            "totalBytes": self.total_bytes,
            "percent": self.percent,
            "error": None if self.error is None else str(self.error),
        }

    def progress_hook(self, status: dict[str, Any]) -> None:
        """Record yt-dlp's progress; runs in the worker thread."""
        if self.cancel_requested:
            raise _JobCancelled
        self.state = JobState.DOWNLOADING
        self.downloaded_bytes = int(status.get("downloaded_bytes") or 0)
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        self.total_bytes = int(total) if total else None


class Downloader:
    """Run at most one job per track, and at most ``download_concurrency`` at once."""

    def __init__(self, settings: Settings, library: Library) -> None:
        self._settings = settings
        self.library = library
        self.limiter = trio.CapacityLimiter(settings.download_concurrency)
        self.jobs: dict[str, DownloadJob] = {}
        self.completed = 0
        self.failed = 0

    def running(self, video_id: str) -> DownloadJob | None:
        return self.jobs.get(video_id)

    def start(self, video_id: str, nursery: trio.Nursery) -> DownloadJob:
        """Return the running job for ``video_id``, or start one in ``nursery``."""
        job = self.jobs.get(video_id)
        if job is None:
            job = self.jobs[video_id] = DownloadJob(video_id)
            nursery.start_soon(self._run, job)
            logger.info("download started video_id=%s", video_id)
        return job

    async def cancel(self, job: DownloadJob, wait_s: float) -> None:
        """Ask ``job`` to stop and wait up to ``wait_s`` for it to end."""
        job.cancel_requested = True
        with trio.move_on_after(wait_s):
            await job.done.wait()

    async def _run(self, job: DownloadJob) -> None:
        try:
            with trio.fail_after(self._settings.download_timeout_s):
                # A boost may ask for a track stored since then, which needs no yt-dlp.
                stored = await trio.to_thread.run_sync(self.library.find, job.video_id)
                if stored is not None:
                    job.track = stored
                    job.state = JobState.DONE
                    return
                partial, metadata = await run_in_worker(
                    self._download_blocking, job, limiter=self.limiter
                )
                job.track = await trio.to_thread.run_sync(
                    self.library.add, job.video_id, partial, metadata
                )
            job.state = JobState.DONE
            self.completed += 1
        except trio.TooSlowError:
            self._fail(job, LibraryError(f"download of {job.video_id} timed out"))
        except _JobCancelled:
            job.state = JobState.CANCELLED
            logger.info("download cancelled video_id=%s", job.video_id)
        except VoyoError as error:
            self._fail(job, error)
        except BaseException:
            # Shutdown: the thread may outlive the process, so its partial
            # file goes now; the thread stops at its next progress report.
            job.cancel_requested = True
            job.state = JobState.CANCELLED
            self.library.remove_partials(f"{job.video_id}-{job.token}")
            raise
        finally:
            del self.jobs[job.video_id]
            job.done.set()

    def _fail(self, job: DownloadJob, error: VoyoError) -> None:
        job.cancel_requested = True
        job.state = JobState.FAILED
        job.error = error
        self.failed += 1
        logger.warning("download failed video_id=%s: %s", job.video_id, error)

    def _download_blocking(self, job: DownloadJob) -> tuple[Path, dict[str, Any]]:
        """Download with yt-dlp and return the partial file; runs in a thread."""
        try:
            return self._run_yt_dlp(job)
        except BaseException:
            self.library.remove_partials(f"{job.video_id}-{job.token}")
            raise

    def _run_yt_dlp(self, job: DownloadJob) -> tuple[Path, dict[str, Any]]:
        url = self._settings.watch_url_template.format(id=job.video_id)
        with yt_dlp.YoutubeDL(self._params(job)) as ydl:
            try:
                info = ydl.extract_info(url, download=True)
            except yt_dlp.utils.YoutubeDLError as error:
                raise _convert(job.video_id, error) from error
        if job.cancel_requested:
            raise _JobCancelled
        return _downloaded_path(info), _metadata(info)

    def _params(self, job: DownloadJob) -> dict[str, Any]:
        params = {
            **ytdlp_params(self._settings),
            "format": "bestaudio/best",
            "outtmpl": self.library.partial_template(job.video_id, job.token),
            "progress_hooks": [job.progress_hook],
            "retries": self._settings.download_retries,
            "fragment_retries": self._settings.download_retries,
            "overwrites": True,
            "continuedl": False,
        }
        if self._settings.download_mp3 and _ffmpeg_present():
            params["postprocessors"] = [
                {"key": "FFmpegExtractAudio", "preferredcodec": "mp3"}
            ]
        return params


@functools.cache
def _ffmpeg_present() -> bool:
    # NOTE: the tests convert to MP3 only where ffmpeg is installed.
    if shutil.which("ffmpeg") is None:
        logger.warning(
            "download_mp3 is on but ffmpeg is not on PATH; keeping originals"
        )
        return False
    return True


def _convert(video_id: str, error: Exception) -> Exception:
    cause = root_cause(error)
    if isinstance(cause, _JobCancelled) or "_JobCancelled" in str(error):
        return _JobCancelled()
    if isinstance(cause, OSError) and cause.errno in (
        errno.ENOSPC,
        errno.EACCES,
        errno.EROFS,
    ):
        return LibraryError(
            f"writing the download of {video_id} failed: {cause.strerror}"
        )
    return convert_ytdlp_error(video_id, error)


def _downloaded_path(info: dict[str, Any] | None) -> Path:
    downloads = (info or {}).get("requested_downloads") or [{}]
    path = downloads[0].get("filepath") or (info or {}).get("filepath")
    if not path:
        raise LibraryError("yt-dlp reported no downloaded file")
    return Path(path)


def _metadata(info: dict[str, Any] | None) -> dict[str, Any]:
    info = info or {}
    return {
        "title": track_title(info),
        "artist": info.get("artist") or info.get("uploader") or info.get("channel"),
        "duration": info.get("duration"),
    }

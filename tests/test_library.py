"""The offline library: downloads through real yt-dlp, ranges, quota, restarts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from voyo_trio import Settings
from voyo_trio._files import ByteRange, RangeNotSatisfiable, parse_byte_range
from voyo_trio._library import PARTIAL_PREFIX
from voyo_trio.standin import CATALOG, Fault, StandIn

from .conftest import STEP_TIMEOUT_S, RunningApp, start_app, wait_for
from .test_stream import assert_json_error

TRACK = CATALOG[0]


def library_names(running: RunningApp) -> list[str]:
    return sorted(path.name for path in running.services.settings.library_dir.iterdir())


async def download(
    http: httpx.AsyncClient, video_id: str = TRACK.video_id
) -> httpx.Response:
    with trio.fail_after(STEP_TIMEOUT_S):
        return await http.get("/download", params={"v": video_id})


async def test_download_stores_track(
    client: httpx.AsyncClient, running: RunningApp, standin: StandIn
) -> None:
    response = await download(client)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["alreadyExists"] is False
    assert body["path"] == f"/downloads/{TRACK.video_id}.wav"
    stored = running.services.settings.library_dir / f"{TRACK.video_id}.wav"
    assert stored.read_bytes() == standin.audio_bytes(TRACK.video_id, "high")
    assert library_names(running) == [f"{TRACK.video_id}.json", f"{TRACK.video_id}.wav"]
    again = await download(client)
    assert again.json()["alreadyExists"] is True


async def test_download_concurrent_calls_share_one_job(
    client: httpx.AsyncClient, standin: StandIn
) -> None:
    answers: list[httpx.Response] = []

    async def ask() -> None:
        answers.append(await download(client))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(ask)
    assert [a.status_code for a in answers] == [200] * 50
    assert sum(a.json()["alreadyExists"] is False for a in answers) >= 1
    assert standin.stats.watch_requests[TRACK.video_id] == 1


async def test_download_slow_job_answers_202_with_progress(
    settings: Settings, standin: StandIn
) -> None:
    standin.set_fault(TRACK.video_id, Fault(stall_after_bytes=300_000))
    slow = settings.replace(
        download_wait_s=0.5, extract_socket_timeout_s=2, download_retries=0
    )
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(nursery, slow, shutdown)
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await download(http)
            assert response.status_code == 202
            assert response.json()["success"] is False
            with trio.fail_after(STEP_TIMEOUT_S):
                await wait_for(lambda: _job_bytes(running) > 0)
                listing = (await http.get("/downloaded")).json()
                cancel = await http.delete("/download", params={"v": TRACK.video_id})
        shutdown.set()
    (job,) = listing["jobs"]
    assert job["id"] == TRACK.video_id
    assert job["state"] == "downloading"
    assert 0 < job["bytes"] <= 300_000
    assert job["totalBytes"] == len(standin.audio_bytes(TRACK.video_id, "high"))
    assert 0 < job["percent"] < 100
    assert listing["downloads"] == []
    assert cancel.json()["cancelled"] is True


def _job_bytes(running: RunningApp) -> int:
    job = running.services.downloads.running(TRACK.video_id)
    return 0 if job is None else job.downloaded_bytes


async def test_download_cancelled_leaves_no_file(
    settings: Settings, standin: StandIn
) -> None:
    standin.set_fault(TRACK.video_id, Fault(stall_after_bytes=200_000))
    slow = settings.replace(
        download_wait_s=0.2, extract_socket_timeout_s=1, download_retries=0
    )
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(nursery, slow, shutdown)
        async with httpx.AsyncClient(base_url=running.url) as http:
            assert (await download(http)).status_code == 202
            with trio.fail_after(STEP_TIMEOUT_S):
                await wait_for(lambda: _job_bytes(running) > 0)
                assert any(n.startswith(PARTIAL_PREFIX) for n in library_names(running))
                cancel = await http.delete("/download", params={"v": TRACK.video_id})
                # The worker thread removes its partial file as it ends.
                await wait_for(lambda: library_names(running) == [])
        shutdown.set()
    assert cancel.status_code == 200
    assert cancel.json() == {"success": True, "cancelled": True, "deleted": False}


async def test_download_failure_is_json_and_leaves_nothing(
    client: httpx.AsyncClient, running: RunningApp, standin: StandIn
) -> None:
    standin.set_fault(TRACK.video_id, Fault(reset_after_bytes=100_000))
    response = await client.get("/download", params={"v": TRACK.video_id})
    assert response.status_code >= 500
    assert_json_error(response, response.status_code)
    assert library_names(running) == []


async def test_download_unknown_track_is_404(client: httpx.AsyncClient) -> None:
    assert_json_error(await download(client, "zzzzzzzzzzz"), 404)


async def test_delete_and_list(client: httpx.AsyncClient, running: RunningApp) -> None:
    for track in CATALOG[:2]:
        assert (await download(client, track.video_id)).status_code == 200
    with trio.fail_after(STEP_TIMEOUT_S):
        listing = (await client.get("/downloaded")).json()
        deleted = await client.delete("/download", params={"v": CATALOG[0].video_id})
        missing = await client.delete("/download", params={"v": CATALOG[0].video_id})
        after = (await client.get("/downloaded")).json()
    assert sorted(listing["downloads"]) == sorted(t.video_id for t in CATALOG[:2])
    titles = {t["id"]: t["title"] for t in listing["tracks"]}
    assert titles[CATALOG[1].video_id] == CATALOG[1].title
    assert deleted.json()["success"] is True
    assert_json_error(missing, 404)
    assert after["downloads"] == [CATALOG[1].video_id]
    assert f"{CATALOG[0].video_id}.json" not in library_names(running)


async def test_library_survives_restart(settings: Settings) -> None:
    for attempt in range(2):
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            running = await start_app(nursery, settings, shutdown)
            async with httpx.AsyncClient(base_url=running.url) as http:
                if attempt == 0:
                    assert (await download(http)).status_code == 200
                with trio.fail_after(STEP_TIMEOUT_S):
                    listing = (await http.get("/downloaded")).json()
            shutdown.set()
        assert listing["downloads"] == [TRACK.video_id]


async def test_partial_leftovers_removed_at_start(settings: Settings) -> None:
    settings.library_dir.mkdir(parents=True)
    leftover = settings.library_dir / f"{PARTIAL_PREFIX}{TRACK.video_id}-dead.wav.part"
    leftover.write_bytes(b"half")
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        await start_app(nursery, settings, shutdown)
        shutdown.set()
    assert not leftover.exists()


async def test_stream_switches_to_library(
    client: httpx.AsyncClient, standin: StandIn
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        before = (await client.get("/stream", params={"v": TRACK.video_id})).json()
        await download(client)
        after = (await client.get("/stream", params={"v": TRACK.video_id})).json()
        tail = await client.get(after["url"], headers={"Range": "bytes=-100"})
    source = standin.audio_bytes(TRACK.video_id, "high")
    assert before["source"] == "voyo_proxy"
    assert after["source"] == "voyo_cache"
    assert after["cached"] is True
    assert after["contentLength"] == len(source)
    assert after["url"].endswith(f"/downloads/{TRACK.video_id}.wav")
    assert tail.status_code == 206
    assert tail.content == source[-100:]


async def test_boost_downloads_played_track(
    settings: Settings, standin: StandIn
) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(boost_downloads=True), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                first = (await http.get("/stream", params={"v": TRACK.video_id})).json()
                await wait_for(lambda: running.services.downloads.completed == 1)
                second = (
                    await http.get("/stream", params={"v": TRACK.video_id})
                ).json()
        shutdown.set()
    assert first["source"] == "voyo_proxy"
    assert second["source"] == "voyo_cache"


@pytest.fixture
async def stored(client: httpx.AsyncClient, standin: StandIn) -> bytes:
    assert (await download(client)).status_code == 200
    return standin.audio_bytes(TRACK.video_id, "high")


FILE_PATH = f"/downloads/{TRACK.video_id}.wav"


@pytest.mark.parametrize(
    ("range_header", "start", "stop"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=1000-", 1000, None),
        ("bytes=-100", -100, None),
        ("bytes=-99999999", 0, None),
        ("bytes=5-5", 5, 6),
        ("bytes=100-99999999", 100, None),
    ],
)
async def test_file_range_forms(
    client: httpx.AsyncClient,
    stored: bytes,
    range_header: str,
    start: int,
    stop: int | None,
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(FILE_PATH, headers={"Range": range_header})
    expected = stored[start:stop]
    first = start % len(stored) if start >= 0 or len(stored) + start > 0 else 0
    first = len(stored) - len(expected) if start < 0 else start
    assert response.status_code == 206
    assert response.content == expected
    assert response.headers["content-length"] == str(len(expected))
    assert response.headers["content-range"] == (
        f"bytes {first}-{first + len(expected) - 1}/{len(stored)}"
    )


@pytest.mark.parametrize("range_header", ["bytes=99999999-", "bytes=-0"])
async def test_file_range_unsatisfiable(
    client: httpx.AsyncClient, stored: bytes, range_header: str
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(FILE_PATH, headers={"Range": range_header})
    assert_json_error(response, 416)
    assert response.headers["content-range"] == f"bytes */{len(stored)}"


@pytest.mark.parametrize(
    "range_header", ["bytes=5-2", "bytes=0-1,5-9", "pages=1-2", "bytes=x-"]
)
async def test_file_range_ignored_when_malformed(
    client: httpx.AsyncClient, stored: bytes, range_header: str
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(FILE_PATH, headers={"Range": range_header})
    assert response.status_code == 200
    assert response.content == stored


async def test_file_if_range(client: httpx.AsyncClient, stored: bytes) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        head = await client.head(FILE_PATH)
        etag, modified = head.headers["etag"], head.headers["last-modified"]
        by_tag = await client.get(
            FILE_PATH, headers={"Range": "bytes=0-9", "If-Range": etag}
        )
        by_date = await client.get(
            FILE_PATH, headers={"Range": "bytes=0-9", "If-Range": modified}
        )
        stale_tag = await client.get(
            FILE_PATH, headers={"Range": "bytes=0-9", "If-Range": '"old"'}
        )
        stale_date = await client.get(
            FILE_PATH,
            headers={"Range": "bytes=0-9", "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"},
        )
    assert head.headers["content-length"] == str(len(stored))
    assert head.content == b""
    assert by_tag.status_code == 206
    assert by_date.status_code == 206
    assert stale_tag.status_code == 200
    assert stale_tag.content == stored
    assert stale_date.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/downloads/..%2F..%2Fetc%2Fpasswd",
        "/downloads/%2e%2e%2fsecret.wav",
        "/downloads/../../etc/passwd",
        "/downloads/..%252F..%252Fetc.wav",
        "/downloads/Qm3vX7bL2pA.json",
        "/downloads/Qm3vX7bL2pA.wav%00.txt",
        "/downloads/.partial-Qm3vX7bL2pA.wav",
        "/downloads/Qm3vX7bL2pA",
        "/downloads/%5C..%5C..%5Cwin.ini",
    ],
)
async def test_file_traversal_refused(
    client: httpx.AsyncClient, stored: bytes, path: str
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(path)
    assert response.status_code in (400, 404)
    assert response.headers["content-type"].startswith("application/json")


async def test_quota_evicts_least_recently_played(
    settings: Settings, standin: StandIn
) -> None:
    size = len(standin.audio_bytes(CATALOG[0].video_id, "high"))
    sizes = [len(standin.audio_bytes(t.video_id, "high")) for t in CATALOG[:3]]
    quota = sizes[0] + sizes[1] + sizes[2] - 1
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(library_max_bytes=quota), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            for track in CATALOG[:2]:
                assert (await download(http, track.video_id)).status_code == 200
            folder = running.services.settings.library_dir
            past = time.time() - 100
            for offset, track in enumerate(CATALOG[:2]):
                path = folder / f"{track.video_id}.wav"
                os.utime(path, (past + offset, path.stat().st_mtime))
            # Playing the older one makes the other the least recently played.
            with trio.fail_after(STEP_TIMEOUT_S):
                await http.get(
                    f"/downloads/{CATALOG[0].video_id}.wav",
                    headers={"Range": "bytes=0-0"},
                )
            assert (await download(http, CATALOG[2].video_id)).status_code == 200
            with trio.fail_after(STEP_TIMEOUT_S):
                listing = (await http.get("/downloaded")).json()
        shutdown.set()
    assert size > 0
    assert sorted(listing["downloads"]) == sorted(
        [CATALOG[0].video_id, CATALOG[2].video_id]
    )


async def test_quota_smaller_than_track_is_clear_error(
    settings: Settings, standin: StandIn
) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(library_max_bytes=1000), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await download(http)
        shutdown.set()
    body = assert_json_error(response, 507)
    assert "larger than the library limit" in str(body["error"])
    assert library_names(running) == []


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH")
async def test_download_mp3_with_ffmpeg(settings: Settings, standin: StandIn) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(download_mp3=True), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await download(http)
            with trio.fail_after(STEP_TIMEOUT_S):
                served = await http.get(f"/downloads/{TRACK.video_id}.mp3")
                stream = (
                    await http.get("/stream", params={"v": TRACK.video_id})
                ).json()
        shutdown.set()
    assert response.status_code == 200, response.text
    assert response.json()["path"] == f"/downloads/{TRACK.video_id}.mp3"
    assert library_names(running) == [f"{TRACK.video_id}.json", f"{TRACK.video_id}.mp3"]
    assert served.status_code == 200
    assert served.headers["content-type"] == "audio/mpeg"
    # An MP3 file starts with an ID3 tag or an MPEG frame sync.
    assert served.content[:3] == b"ID3" or served.content[:2] in (
        b"\xff\xfb",
        b"\xff\xf3",
    )
    # Compressed, it is far smaller than the WAV source.
    assert len(served.content) < len(standin.audio_bytes(TRACK.video_id, "high")) // 2
    assert stream["source"] == "voyo_cache"
    assert stream["url"].endswith(f"/downloads/{TRACK.video_id}.mp3")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """Mount a 2.5 MB tmpfs, or skip the test where mounting is not allowed."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2500k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


async def test_full_disk_is_507_and_keeps_library(
    settings: Settings, standin: StandIn, small_disk: Path
) -> None:
    # CATALOG[2] (1.6 MB) fits on the disk, and CATALOG[0] (2.1 MB) then does not.
    small, large = CATALOG[2].video_id, CATALOG[0].video_id
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(library_dir=small_disk), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            stored = await download(http, small)
            full = await download(http, large)
            with trio.fail_after(STEP_TIMEOUT_S):
                listing = (await http.get("/downloaded")).json()
                served = await http.get(f"/downloads/{small}.wav")
        shutdown.set()
    assert stored.status_code == 200
    body = assert_json_error(full, 507)
    assert "No space left on device" in str(body["error"])
    assert listing["downloads"] == [small]
    assert served.content == standin.audio_bytes(small, "high")
    assert library_names(running) == [f"{small}.json", f"{small}.wav"]


async def test_large_file_does_not_block_other_requests(
    client: httpx.AsyncClient, running: RunningApp
) -> None:
    folder = running.services.settings.library_dir
    big = folder / "Big000000_1.wav"
    big.write_bytes(os.urandom(1024 * 1024) * 48)
    events: list[str] = []
    with trio.fail_after(STEP_TIMEOUT_S * 3):
        async with client.stream("GET", f"/downloads/{big.name}") as response:
            assert response.status_code == 200
            chunks = response.aiter_raw()
            async for _ in chunks:
                events.append("chunk")
                if events.count("chunk") == 1:
                    for _ in range(10):
                        health = await client.get("/health")
                        assert health.status_code == 200
                        events.append("health")
            await chunks.aclose()  # type: ignore[attr-defined]
    # All health checks were answered while the large body was still flowing.
    last_health = len(events) - 1 - events[::-1].index("health")
    assert events.count("health") == 10
    assert events[last_health + 1 :].count("chunk") > 0


async def test_unwritable_library_stops_startup(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOYO_")}
    env["VOYO_LIBRARY_DIR"] = str(blocker / "library")
    env["VOYO_PORT"] = "0"
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-m", "voyo_trio", "serve"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 2
    assert b"library folder" in result.stderr
    assert b"not writable" in result.stderr


def test_parse_byte_range_table() -> None:
    assert parse_byte_range("bytes=0-1", 10) == ByteRange(0, 1)
    assert parse_byte_range("bytes=-3", 10) == ByteRange(7, 9)
    assert parse_byte_range("bytes=-30", 10) == ByteRange(0, 9)
    assert parse_byte_range("bytes=8-30", 10) == ByteRange(8, 9)
    assert parse_byte_range("BYTES=2-3", 10) == ByteRange(2, 3)
    assert parse_byte_range("bytes=3-2", 10) is None
    assert parse_byte_range(None, 10) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_byte_range("bytes=10-", 10)


@pytest.mark.parametrize(
    "range_header",
    ["bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000, "bytes=" + "1" * 30 + "-"],
)
async def test_file_huge_range_numbers_ignored(
    client: httpx.AsyncClient, stored: bytes, range_header: str
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(FILE_PATH, headers={"Range": range_header})
    assert response.status_code == 200
    assert response.content == stored


async def test_file_deleted_while_playing(
    client: httpx.AsyncClient, stored: bytes
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        async with client.stream("GET", FILE_PATH) as response:
            assert response.status_code == 200
            deleted = await client.delete("/download", params={"v": TRACK.video_id})
            body = await response.aread()
        gone = await client.get(FILE_PATH)
    assert deleted.json()["deleted"] is True
    assert body == stored
    assert_json_error(gone, 404)


async def test_download_head_starts_nothing(
    client: httpx.AsyncClient, running: RunningApp, standin: StandIn
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.head("/download", params={"v": TRACK.video_id})
    assert response.status_code == 404
    assert running.services.downloads.jobs == {}
    assert standin.stats.watch_requests[TRACK.video_id] == 0

"""Tests of the loopback YouTube stand-in over real HTTPS, httpx and yt-dlp."""

from __future__ import annotations

import html
import io
import pathlib
import re
import ssl
import wave
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio
import yt_dlp

from voyo_trio.standin import (
    AUDIO_FORMATS,
    CATALOG,
    QUALITIES,
    Fault,
    StandIn,
)

STEP_TIMEOUT_S = 5.0
VIDEO_ID = "Qm3vX7bL2pA"
ESCAPED_VIDEO_ID = "e4Ui-9ZaPs_"
UNKNOWN_VIDEO_ID = "zzzzzzzzzzz"
_SOURCE_TAG = re.compile(r'<source src="([^"]+)" type="audio/wav" label="([^"]+)">')


def make_client_context(standin: StandIn) -> ssl.SSLContext:
    context = ssl.create_default_context()
    standin.ca.configure_trust(context)
    return context


@pytest.fixture
async def standin(nursery: trio.Nursery) -> StandIn:
    server = StandIn()
    with trio.fail_after(STEP_TIMEOUT_S):
        await nursery.start(server.serve)
    return server


@pytest.fixture
async def client(standin: StandIn) -> AsyncIterator[httpx.AsyncClient]:
    context = make_client_context(standin)
    async with httpx.AsyncClient(verify=context) as http_client:
        yield http_client


async def get(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    with trio.fail_after(STEP_TIMEOUT_S):
        return await client.get(url, headers=headers)


async def fetch_sources(
    client: httpx.AsyncClient, standin: StandIn, video_id: str
) -> dict[str, str]:
    """Return the watch page's source URLs by label."""
    response = await get(client, standin.watch_url_template.format(id=video_id))
    assert response.status_code == 200
    return {
        html.unescape(label): html.unescape(url)
        for url, label in _SOURCE_TAG.findall(response.text)
    }


async def open_raw_tls(standin: StandIn) -> trio.SSLStream[trio.SocketStream]:
    context = make_client_context(standin)
    with trio.fail_after(STEP_TIMEOUT_S):
        stream = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", standin.port, ssl_context=context, https_compatible=True
        )
        await stream.do_handshake()
    return stream


async def read_until_closed(stream: trio.SSLStream[trio.SocketStream]) -> bytes:
    received = bytearray()
    with trio.fail_after(STEP_TIMEOUT_S):
        while data := await stream.receive_some(65536):
            received += data
    return bytes(received)


async def wait_until_no_open_connections(standin: StandIn) -> None:
    # The stats are plain counters with no event to wait on, hence the polling.
    with trio.fail_after(STEP_TIMEOUT_S):
        while standin.stats.open_connections:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def read_body_until_error(
    client: httpx.AsyncClient, url: str
) -> tuple[bytes, Exception | None]:
    """Stream a response body and return the bytes read and the error, if any."""
    received = bytearray()
    try:
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_raw():
                received += chunk
    except httpx.TransportError as error:
        return bytes(received), error
    return bytes(received), None


# Catalog and audio


def test_catalog_entries_valid() -> None:
    ids = [track.video_id for track in CATALOG]
    assert len(CATALOG) >= 10
    assert len(set(ids)) == len(ids)
    for track in CATALOG:
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}", track.video_id), track
        assert 10 <= track.duration_s <= 40, track
    assert any(not track.title.isascii() for track in CATALOG)


@pytest.mark.parametrize("quality", QUALITIES)
def test_audio_wav_header_parses(quality: str) -> None:
    expected = {
        "low": (8000, 1, 1),
        "medium": (8000, 2, 1),
        "high": (22050, 2, 2),
    }[quality]
    track = CATALOG[0]
    data = StandIn().audio_bytes(track.video_id, quality)
    with wave.open(io.BytesIO(data), "rb") as reader:
        assert reader.getframerate() == expected[0]
        assert reader.getsampwidth() == expected[1]
        assert reader.getnchannels() == expected[2]
        assert reader.getnframes() == expected[0] * track.duration_s


def test_audio_bitrate_labels_exact() -> None:
    labels = {quality: AUDIO_FORMATS[quality].label for quality in QUALITIES}
    bitrates = {quality: AUDIO_FORMATS[quality].bitrate_bps for quality in QUALITIES}
    assert labels == {"low": "64kbps", "medium": "128kbps", "high": "706kbps"}
    assert bitrates == {"low": 64_000, "medium": 128_000, "high": 705_600}


def test_audio_differs_per_track() -> None:
    standin = StandIn()
    files = {standin.audio_bytes(track.video_id, "low") for track in CATALOG}
    assert len(files) == len(CATALOG)


def test_audio_deterministic_across_instances() -> None:
    first = StandIn().audio_bytes(VIDEO_ID, "high")
    second = StandIn().audio_bytes(VIDEO_ID, "high")
    assert first == second


def test_audio_unknown_names_raise() -> None:
    standin = StandIn()
    with pytest.raises(ValueError, match=UNKNOWN_VIDEO_ID):
        standin.audio_bytes(UNKNOWN_VIDEO_ID, "low")
    with pytest.raises(ValueError, match="ultra"):
        standin.audio_bytes(VIDEO_ID, "ultra")


# Server lifecycle


def test_base_url_before_start_raises() -> None:
    with pytest.raises(RuntimeError, match=r"nursery\.start"):
        _ = StandIn().base_url


async def test_serve_reports_base_url(nursery: trio.Nursery) -> None:
    standin = StandIn()
    with trio.fail_after(STEP_TIMEOUT_S):
        base_url = await nursery.start(standin.serve)
    assert base_url == standin.base_url
    assert base_url == f"https://127.0.0.1:{standin.port}"
    assert standin.watch_url_template == f"{base_url}/watch?v={{id}}"


async def test_serve_closes_sockets_on_exit() -> None:
    standin = StandIn()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(STEP_TIMEOUT_S):
            await nursery.start(standin.serve)
        stream = await open_raw_tls(standin)
        nursery.cancel_scope.cancel()
    async with stream:
        assert await read_until_closed(stream) == b""
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", standin.port)


def test_write_ca_pem_roundtrip(tmp_path: pathlib.Path) -> None:
    standin = StandIn()
    path = standin.write_ca_pem(tmp_path / "ca.pem")
    assert path == tmp_path / "ca.pem"
    assert path.read_bytes() == standin.ca.cert_pem.bytes()


# Watch pages


async def test_watch_page_lists_sources(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    track = CATALOG[0]
    response = await get(client, standin.watch_url_template.format(id=track.video_id))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert f"<title>{track.artist} - {track.title}</title>" in response.text
    assert f'<meta property="og:title" content="{track.title}">' in response.text
    assert "<audio controls" in response.text
    sources = _SOURCE_TAG.findall(response.text)
    assert [label for _, label in sources] == ["64kbps", "128kbps", "706kbps"]
    for url, _ in sources:
        assert html.unescape(url).startswith(f"{standin.base_url}/media/")


async def test_watch_page_escapes_text(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = standin.watch_url_template.format(id=ESCAPED_VIDEO_ID)
    response = await get(client, url)
    assert "Coastline &lt;Live&gt;" in response.text
    assert "<Live>" not in response.text


async def test_watch_page_non_ascii_title(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    track = next(track for track in CATALOG if not track.title.isascii())
    response = await get(client, standin.watch_url_template.format(id=track.video_id))
    assert response.status_code == 200
    assert f"<title>{track.artist} - {track.title}</title>" in response.text


async def test_watch_unknown_id_404(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = standin.watch_url_template.format(id=UNKNOWN_VIDEO_ID)
    response = await get(client, url)
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert UNKNOWN_VIDEO_ID in response.text


async def test_watch_missing_id_404(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    response = await get(client, f"{standin.base_url}/watch")
    assert response.status_code == 404


async def test_watch_post_405(standin: StandIn, client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.post(f"{standin.base_url}/watch?v={VIDEO_ID}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_unknown_path_404(standin: StandIn, client: httpx.AsyncClient) -> None:
    response = await get(client, f"{standin.base_url}/nothing/here")
    assert response.status_code == 404


# Media host


@pytest.mark.parametrize("quality", QUALITIES)
async def test_media_full_body_matches(
    standin: StandIn, client: httpx.AsyncClient, quality: str
) -> None:
    sources = await fetch_sources(client, standin, VIDEO_ID)
    url = sources[AUDIO_FORMATS[quality].label]
    response = await get(client, url)
    expected = standin.audio_bytes(VIDEO_ID, quality)
    assert response.status_code == 200
    assert response.content == expected
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == str(len(expected))


async def test_media_sends_cdn_headers(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    response = await get(client, standin.media_url(VIDEO_ID, "low"))
    assert response.headers["x-upstream-secret"] == "standin"
    assert response.headers["server"] == "standin-media"
    assert response.headers["set-cookie"] == "s=1"


async def test_media_head_has_no_body(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.head(standin.media_url(VIDEO_ID, "medium"))
    size = len(standin.audio_bytes(VIDEO_ID, "medium"))
    assert response.status_code == 200
    assert response.headers["content-length"] == str(size)
    assert response.content == b""
    assert standin.stats.media_bytes_sent == 0


RangeCase = Callable[[int], tuple[int, int]]

RANGE_CASES = [
    pytest.param("bytes=0-1", lambda size: (0, 1), id="first_two"),
    pytest.param("bytes=100-", lambda size: (100, size - 1), id="open_ended"),
    pytest.param("bytes=-500", lambda size: (size - 500, size - 1), id="suffix"),
    pytest.param("bytes=-{over}", lambda size: (0, size - 1), id="suffix_too_long"),
    pytest.param("bytes=10-{over}", lambda size: (10, size - 1), id="last_past_end"),
    pytest.param("BYTES = 3-4", lambda size: (3, 4), id="unit_case_spaces"),
]


@pytest.mark.parametrize(("header", "expected_range"), RANGE_CASES)
async def test_media_range_partial(
    standin: StandIn,
    client: httpx.AsyncClient,
    header: str,
    expected_range: RangeCase,
) -> None:
    audio = standin.audio_bytes(VIDEO_ID, "low")
    size = len(audio)
    range_header = header.format(over=size + 10)
    url = standin.media_url(VIDEO_ID, "low")
    response = await get(client, url, headers={"Range": range_header})
    first, last = expected_range(size)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert response.headers["content-length"] == str(last - first + 1)
    assert response.content == audio[first : last + 1]


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={size}-{over}", "bytes=-0"])
async def test_media_range_unsatisfiable_416(
    standin: StandIn, client: httpx.AsyncClient, header: str
) -> None:
    size = len(standin.audio_bytes(VIDEO_ID, "low"))
    range_header = header.format(size=size, over=size + 10)
    url = standin.media_url(VIDEO_ID, "low")
    response = await get(client, url, headers={"Range": range_header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize(
    "header",
    ["bytes=abc", "bytes=5-2", "items=0-1", "bytes=", "bytes=-", "bytes=0-1,4-5"],
)
async def test_media_range_ignored_200(
    standin: StandIn, client: httpx.AsyncClient, header: str
) -> None:
    audio = standin.audio_bytes(VIDEO_ID, "low")
    url = standin.media_url(VIDEO_ID, "low")
    response = await get(client, url, headers={"Range": header})
    assert response.status_code == 200
    assert response.content == audio


async def test_media_forged_signature_403(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = standin.media_url(VIDEO_ID, "low")
    signature = re.search(r"sig=([0-9a-f]+)", url)
    assert signature is not None
    flipped = "0" if signature.group(1)[-1] != "0" else "1"
    forged = url[:-1] + flipped
    response = await get(client, forged)
    assert response.status_code == 403
    assert "signature" in response.text


async def test_media_altered_quality_403(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = standin.media_url(VIDEO_ID, "low").replace("/low.wav", "/high.wav")
    response = await get(client, url)
    assert response.status_code == 403


async def test_media_altered_expiry_403(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = re.sub(r"expire=\d+", "expire=9999999999", standin.media_url(VIDEO_ID, "low"))
    response = await get(client, url)
    assert response.status_code == 403


async def test_media_missing_signature_403(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = f"{standin.base_url}/media/{VIDEO_ID}/low.wav?expire=9999999999&gen=0"
    response = await get(client, url)
    assert response.status_code == 403


async def test_media_expired_url_403(nursery: trio.Nursery) -> None:
    expired = StandIn(url_ttl_s=-60)
    with trio.fail_after(STEP_TIMEOUT_S):
        await nursery.start(expired.serve)
    async with httpx.AsyncClient(verify=make_client_context(expired)) as client:
        sources = await fetch_sources(client, expired, VIDEO_ID)
        response = await get(client, sources["64kbps"])
    assert response.status_code == 403
    assert "expired" in response.text


async def test_media_revoked_url_403(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    old_url = (await fetch_sources(client, standin, VIDEO_ID))["128kbps"]
    standin.revoke(VIDEO_ID)
    old_response = await get(client, old_url)
    new_url = (await fetch_sources(client, standin, VIDEO_ID))["128kbps"]
    new_response = await get(client, new_url)
    assert old_response.status_code == 403
    assert "revoked" in old_response.text
    assert new_response.status_code == 200
    assert new_response.content == standin.audio_bytes(VIDEO_ID, "medium")


async def test_media_revoke_spares_other_tracks(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    other_url = standin.media_url(CATALOG[1].video_id, "low")
    standin.revoke(VIDEO_ID)
    response = await get(client, other_url)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        f"/media/{UNKNOWN_VIDEO_ID}/low.wav",
        f"/media/{VIDEO_ID}/ultra.wav",
        f"/media/{VIDEO_ID}/low.mp3",
        f"/media/{VIDEO_ID}",
    ],
)
async def test_media_unknown_file_404(
    standin: StandIn, client: httpx.AsyncClient, path: str
) -> None:
    response = await get(client, f"{standin.base_url}{path}?expire=1&gen=0&sig=00")
    assert response.status_code == 404


def test_media_url_unknown_names_raise() -> None:
    standin = StandIn()
    with pytest.raises(ValueError, match=UNKNOWN_VIDEO_ID):
        standin.media_url(UNKNOWN_VIDEO_ID, "low")
    with pytest.raises(ValueError, match="ultra"):
        standin.media_url(VIDEO_ID, "ultra")


# Faults


@pytest.mark.parametrize("status", [403, 500, 503, 599])
async def test_fault_status_replaces_media(
    standin: StandIn, client: httpx.AsyncClient, status: int
) -> None:
    url = standin.media_url(VIDEO_ID, "low")
    standin.set_fault(VIDEO_ID, Fault(status=status))
    first = await get(client, url)
    second = await get(client, url)
    standin.set_fault(VIDEO_ID, None)
    cleared = await get(client, url)
    assert first.status_code == status
    assert second.status_code == status
    assert "fault" in first.text
    assert first.headers["x-upstream-secret"] == "standin"
    assert cleared.status_code == 200


async def test_fault_times_clears_itself(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = standin.media_url(VIDEO_ID, "low")
    standin.set_fault(VIDEO_ID, Fault(status=403, times=1))
    first = await get(client, url)
    second = await get(client, url)
    assert first.status_code == 403
    assert second.status_code == 200


async def test_fault_only_hits_its_track(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    standin.set_fault(VIDEO_ID, Fault(status=500))
    response = await get(client, standin.media_url(CATALOG[1].video_id, "low"))
    assert response.status_code == 200


async def test_fault_delay_before_head(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = standin.media_url(VIDEO_ID, "low")
    standin.set_fault(VIDEO_ID, Fault(delay_s=0.3, times=1))
    started = trio.current_time()
    response = await get(client, url)
    elapsed = trio.current_time() - started
    assert response.status_code == 200
    assert elapsed >= 0.3
    assert response.content == standin.audio_bytes(VIDEO_ID, "low")


async def test_fault_reset_before_headers(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = standin.media_url(VIDEO_ID, "low")
    standin.set_fault(VIDEO_ID, Fault(reset_before_headers=True, times=1))
    with pytest.raises(httpx.TransportError):
        await get(client, url)
    after = await get(client, url)
    assert after.status_code == 200


async def test_fault_reset_after_bytes(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    url = standin.media_url(VIDEO_ID, "high")
    size = len(standin.audio_bytes(VIDEO_ID, "high"))
    standin.set_fault(VIDEO_ID, Fault(reset_after_bytes=100_000))
    with trio.fail_after(STEP_TIMEOUT_S):
        received, error = await read_body_until_error(client, url)
    # The server waits for the peer to acknowledge the bytes before the reset,
    # so on Linux the client reads exactly the promised prefix first.
    assert isinstance(error, httpx.ReadError)
    assert len(received) == 100_000
    assert len(received) < size
    assert received == standin.audio_bytes(VIDEO_ID, "high")[: len(received)]


async def test_fault_stall_after_bytes(standin: StandIn) -> None:
    url = standin.media_url(VIDEO_ID, "high")
    standin.set_fault(VIDEO_ID, Fault(stall_after_bytes=70_000))
    timeout = httpx.Timeout(STEP_TIMEOUT_S, read=0.5)
    context = make_client_context(standin)
    async with httpx.AsyncClient(verify=context, timeout=timeout) as client:
        with trio.fail_after(STEP_TIMEOUT_S):
            received, error = await read_body_until_error(client, url)
    assert isinstance(error, httpx.ReadTimeout)
    assert len(received) == 70_000
    assert standin.stats.media_bytes_sent == 70_000


async def test_fault_stall_ends_when_client_closes(standin: StandIn) -> None:
    url = standin.media_url(VIDEO_ID, "low")
    standin.set_fault(VIDEO_ID, Fault(stall_after_bytes=10))
    timeout = httpx.Timeout(STEP_TIMEOUT_S, read=0.3)
    context = make_client_context(standin)
    async with httpx.AsyncClient(verify=context, timeout=timeout) as client:
        with trio.fail_after(STEP_TIMEOUT_S):
            await read_body_until_error(client, url)
    await wait_until_no_open_connections(standin)
    assert standin.stats.open_connections == 0


def test_fault_rejects_invalid_fields() -> None:
    with pytest.raises(ValueError, match="exclusive"):
        Fault(reset_after_bytes=1, stall_after_bytes=1)
    with pytest.raises(ValueError, match="100"):
        Fault(status=100)
    with pytest.raises(ValueError, match="delay_s"):
        Fault(delay_s=-1)
    with pytest.raises(ValueError, match=UNKNOWN_VIDEO_ID):
        StandIn().set_fault(UNKNOWN_VIDEO_ID, Fault(status=500))


# Connections and statistics


async def test_keepalive_reuses_connection(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    sources = await fetch_sources(client, standin, VIDEO_ID)
    media = await get(client, sources["64kbps"])
    missing = await get(client, f"{standin.base_url}/missing")
    again = await get(client, sources["64kbps"])
    assert media.status_code == 200
    assert missing.status_code == 404
    assert again.status_code == 200
    assert standin.stats.connections_accepted == 1
    assert standin.stats.open_connections == 1


async def test_stats_count_requests(
    standin: StandIn, client: httpx.AsyncClient
) -> None:
    sources = await fetch_sources(client, standin, VIDEO_ID)
    await get(client, sources["64kbps"])
    await get(client, sources["64kbps"], headers={"Range": "bytes=0-9"})
    size = len(standin.audio_bytes(VIDEO_ID, "low"))
    assert standin.stats.watch_requests[VIDEO_ID] == 1
    assert standin.stats.media_requests[VIDEO_ID] == 2
    assert standin.stats.media_bytes_sent == size + 10


async def test_pipelined_requests_answered(standin: StandIn) -> None:
    requests = (
        f"GET /watch?v={VIDEO_ID} HTTP/1.1\r\nHost: x\r\n\r\n"
        f"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    async with await open_raw_tls(standin) as stream:
        with trio.fail_after(STEP_TIMEOUT_S):
            await stream.send_all(requests.encode())
        received = await read_until_closed(stream)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"HTTP/1.1 404 Not Found\r\n" in received
    assert standin.stats.connections_accepted == 1


async def test_media_reader_backpressure(standin: StandIn) -> None:
    video_id = max(CATALOG, key=lambda track: track.duration_s).video_id
    size = len(standin.audio_bytes(video_id, "high"))
    path = standin.media_url(video_id, "high").removeprefix(standin.base_url)
    async with await open_raw_tls(standin) as stream:
        with trio.fail_after(STEP_TIMEOUT_S):
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await trio.sleep(0.3)
        # A client that reads nothing stops the sender once the loopback socket
        # buffers fill, which is a few hundred KiB, far below the 3.5 MB file.
        assert standin.stats.media_bytes_sent < size // 2


async def test_bad_request_line_400(standin: StandIn) -> None:
    async with await open_raw_tls(standin) as stream:
        with trio.fail_after(STEP_TIMEOUT_S):
            await stream.send_all(b"NOT A REQUEST LINE\r\n\r\n")
        received = await read_until_closed(stream)
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_idle_connection_closed(nursery: trio.Nursery) -> None:
    standin = StandIn(idle_timeout_s=0.2)
    with trio.fail_after(STEP_TIMEOUT_S):
        await nursery.start(standin.serve)
    async with await open_raw_tls(standin) as stream:
        assert standin.stats.connections_accepted == 1
        assert await read_until_closed(stream) == b""
    await wait_until_no_open_connections(standin)
    assert standin.stats.open_connections == 0


async def test_untrusted_client_rejected(standin: StandIn) -> None:
    context = ssl.create_default_context()
    async with httpx.AsyncClient(verify=context) as client:
        with pytest.raises(httpx.ConnectError):
            await get(client, standin.watch_url_template.format(id=VIDEO_ID))
    assert standin.stats.watch_requests[VIDEO_ID] == 0


# yt-dlp


def extract_with_ytdlp(url: str, format_spec: str) -> dict[str, Any]:
    options = {
        "format": format_spec,
        "quiet": True,
        "no_warnings": True,
        "cachedir": False,
        "compat_opts": ["no-certifi"],
    }
    with yt_dlp.YoutubeDL(options) as downloader:
        info: dict[str, Any] = downloader.extract_info(url, download=False)
    return info


async def test_ytdlp_generic_extractor_formats(
    standin: StandIn, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_path = standin.write_ca_pem(tmp_path / "standin-ca.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
    url = standin.watch_url_template.format(id=VIDEO_ID)
    chosen: dict[str, dict[str, Any]] = {}
    for format_spec in ("bestaudio[tbr<=144]", "bestaudio[tbr<=80]", "bestaudio"):
        with trio.fail_after(30):
            info = await trio.to_thread.run_sync(extract_with_ytdlp, url, format_spec)
        chosen[format_spec] = info
    formats = chosen["bestaudio"]["formats"]
    assert sorted(fmt["tbr"] for fmt in formats) == [64, 128, 706]
    assert all(fmt["vcodec"] == "none" for fmt in formats)
    assert chosen["bestaudio[tbr<=144]"]["url"].startswith(
        f"{standin.base_url}/media/{VIDEO_ID}/medium.wav?"
    )
    assert chosen["bestaudio[tbr<=80]"]["url"].startswith(
        f"{standin.base_url}/media/{VIDEO_ID}/low.wav?"
    )
    assert chosen["bestaudio"]["url"].startswith(
        f"{standin.base_url}/media/{VIDEO_ID}/high.wav?"
    )
    assert standin.stats.watch_requests[VIDEO_ID] == 3


async def test_ytdlp_url_fetches_media(
    standin: StandIn,
    client: httpx.AsyncClient,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(standin.write_ca_pem(tmp_path / "ca.pem")))
    url = standin.watch_url_template.format(id=VIDEO_ID)
    with trio.fail_after(30):
        info = await trio.to_thread.run_sync(
            extract_with_ytdlp, url, "bestaudio[tbr<=80]"
        )
    response = await get(client, info["url"])
    assert response.status_code == 200
    assert response.content == standin.audio_bytes(VIDEO_ID, "low")

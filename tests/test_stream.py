"""End to end: the app under Hypercorn, the stand-in over HTTPS, real yt-dlp."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import trio

from voyo_trio import Settings, encode_voyo_id
from voyo_trio._resolver import Kind, Quality
from voyo_trio.standin import CATALOG, CDN_HEADERS, Fault, StandIn, Track

from .conftest import STEP_TIMEOUT_S, RunningApp, start_app, wait_for


def assert_json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str)
    assert body["error"]
    assert "Traceback" not in body["error"]
    return body


async def wait_until_idle(running: RunningApp) -> None:
    """Wait (at most a second) for zero active streams and no busy connection."""
    services = running.services

    def idle() -> bool:
        return not (services.streams.active or services.upstream.pool_state().active)

    with trio.move_on_after(1):
        await wait_for(idle)
    assert services.streams.active == 0
    assert services.upstream.pool_state().active == 0


async def read_proxy(
    http: httpx.AsyncClient, video_id: str, received: bytearray, stop_at: int
) -> httpx.Response:
    """Stream ``/proxy`` into ``received`` until it has ``stop_at`` bytes or ends."""
    async with http.stream("GET", "/proxy", params={"v": video_id}) as response:
        chunks = cast(AsyncGenerator[bytes, None], response.aiter_raw())
        async with aclosing(chunks):
            async for chunk in chunks:
                received += chunk
                if len(received) >= stop_at:
                    break
    return response


async def test_stream_returns_proxy_json(
    client: httpx.AsyncClient, running: RunningApp, track: Track
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/stream", params={"v": track.video_id})
    assert response.status_code == 200
    body = response.json()
    assert body["videoId"] == track.video_id
    assert body["type"] == "audio"
    assert body["quality"] == "high"
    assert body["cached"] is False
    assert body["source"] == "voyo_proxy"
    assert body["url"] == body["audioUrl"]
    assert body["url"].startswith(f"{running.url}/proxy?v={track.video_id}")
    with trio.fail_after(STEP_TIMEOUT_S):
        again = await client.get("/stream", params={"v": track.video_id})
    assert again.json()["cached"] is True


async def test_stream_quality_picks_distinct_formats(
    client: httpx.AsyncClient, track: Track
) -> None:
    formats = {}
    for quality in ("low", "medium", "high"):
        with trio.fail_after(STEP_TIMEOUT_S):
            response = await client.get(
                "/stream", params={"v": track.video_id, "quality": quality}
            )
        assert response.status_code == 200
        formats[quality] = response.json()["format"]["bitrateKbps"]
    assert formats["low"] < formats["medium"] < formats["high"]


async def test_proxy_whole_body_matches_source(
    client: httpx.AsyncClient, standin: StandIn, track: Track
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/proxy", params={"v": track.video_id})
    source = standin.audio_bytes(track.video_id, "high")
    assert response.status_code == 200
    assert response.content == source
    assert response.headers["content-length"] == str(len(source))
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["accept-ranges"] == "bytes"


async def test_proxy_hides_upstream_headers(
    client: httpx.AsyncClient, track: Track
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/proxy", params={"v": track.video_id}, headers={"Range": "bytes=0-9"}
        )
    assert response.status_code == 206
    for name, _ in CDN_HEADERS:
        assert name.lower() not in response.headers
    assert "set-cookie" not in response.headers


async def test_upstream_cookie_not_sent_back(
    client: httpx.AsyncClient, standin: StandIn, track: Track
) -> None:
    # The media host sets a cookie on every response, as a CDN does.
    with trio.fail_after(STEP_TIMEOUT_S):
        for _ in range(2):
            response = await client.get(
                "/proxy", params={"v": track.video_id}, headers={"Range": "bytes=0-9"}
            )
            assert response.status_code == 206
    assert standin.stats.media_requests[track.video_id] == 2
    sent = standin.stats.last_media_headers
    assert "cookie" not in sent
    assert sent["accept-encoding"] == "identity"
    assert sent["range"] == "bytes=0-9"
    assert sent["user-agent"]


@pytest.mark.parametrize(
    ("range_header", "status", "start", "stop"),
    [
        ("bytes=0-1", 206, 0, 2),
        ("bytes=1000-", 206, 1000, None),
        ("bytes=-500", 206, -500, None),
        ("bytes=10-19", 206, 10, 20),
        ("bytes=oops", 200, 0, None),
    ],
)
async def test_proxy_range_forms(
    client: httpx.AsyncClient,
    standin: StandIn,
    track: Track,
    range_header: str,
    status: int,
    start: int,
    stop: int | None,
) -> None:
    source = standin.audio_bytes(track.video_id, "low")
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/proxy",
            params={"v": track.video_id, "quality": "low"},
            headers={"Range": range_header},
        )
    expected = source[start:stop]
    assert response.status_code == status
    assert response.content == expected
    assert response.headers["content-length"] == str(len(expected))
    if status == 206:
        first = start % len(source)
        last = first + len(expected) - 1
        assert (
            response.headers["content-range"] == f"bytes {first}-{last}/{len(source)}"
        )


async def test_proxy_range_past_end_is_416(
    client: httpx.AsyncClient, standin: StandIn, track: Track
) -> None:
    size = len(standin.audio_bytes(track.video_id, "low"))
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/proxy",
            params={"v": track.video_id, "quality": "low"},
            headers={"Range": f"bytes={size}-"},
        )
    assert_json_error(response, 416)
    assert response.headers["content-range"] == f"bytes */{size}"


async def test_cdn_stream_voyo_id_matches_proxy(
    client: httpx.AsyncClient, track: Track
) -> None:
    params = {"quality": "medium"}
    headers = {"Range": "bytes=100-4099"}
    with trio.fail_after(STEP_TIMEOUT_S):
        via_proxy = await client.get(
            "/proxy", params={"v": track.video_id, **params}, headers=headers
        )
        via_cdn = await client.get(
            f"/cdn/stream/{encode_voyo_id(track.video_id)}",
            params=params,
            headers=headers,
        )
        via_plain_id = await client.get(
            f"/cdn/stream/{track.video_id}", params=params, headers=headers
        )
    assert via_proxy.status_code == 206
    assert via_cdn.status_code == 206
    assert via_cdn.content == via_proxy.content
    assert via_plain_id.content == via_proxy.content
    assert via_cdn.headers["content-range"] == via_proxy.headers["content-range"]


@pytest.mark.parametrize(
    "path",
    [
        "/stream",
        "/stream?v=",
        "/stream?v=short",
        "/stream?v=toolongtoolong",
        "/stream?v=abc%2F..%2Fdefg",
        "/proxy?v=abc$%25^&*()!",
        "/cdn/stream/vyo_notbase64!!!!!!",
        "/cdn/stream/vyo_ZFF3NHc5V2dYY1F",
        "/stream?v=dQw4w9WgXcQ&quality=ultra",
        "/proxy?v=dQw4w9WgXcQ&type=podcast",
        "/prefetch?v=x",
    ],
)
async def test_invalid_input_is_400_json(client: httpx.AsyncClient, path: str) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(path)
    assert_json_error(response, 400)


async def test_unknown_enum_lists_allowed_values(client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/stream?v=dQw4w9WgXcQ&quality=ultra")
    message = assert_json_error(response, 400)["error"]
    assert "low, medium, high" in str(message)


async def test_unknown_track_is_404_json(client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/stream", params={"v": "zzzzzzzzzzz"})
    assert_json_error(response, 404)


async def test_unknown_route_is_404_json(client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/nope")
    assert_json_error(response, 404)


async def test_concurrent_misses_run_one_extraction(
    client: httpx.AsyncClient, running: RunningApp, standin: StandIn, track: Track
) -> None:
    statuses: list[int] = []

    async def ask() -> None:
        response = await client.get("/stream", params={"v": track.video_id})
        statuses.append(response.status_code)

    with trio.fail_after(STEP_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(ask)
    assert statuses == [200] * 50
    assert standin.stats.watch_requests[track.video_id] == 1
    assert running.services.resolver.stats.extractions == 1


async def test_cancelled_first_requester_leaves_others_served(
    client: httpx.AsyncClient, running: RunningApp, standin: StandIn, track: Track
) -> None:
    answers: list[httpx.Response] = []

    async def ask() -> None:
        answers.append(await client.get("/stream", params={"v": track.video_id}))

    key = (track.video_id, Kind.AUDIO, Quality.HIGH)
    first = trio.CancelScope()
    with trio.fail_after(STEP_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ask_within, client, track, first)
            # Wait until the extraction runs on behalf of the first requester.
            await wait_for(lambda: running.services.resolver.in_flight(key))
            for _ in range(5):
                nursery.start_soon(ask)
            await trio.sleep(0.05)
            first.cancel()
    assert [answer.status_code for answer in answers] == [200] * 5
    assert standin.stats.watch_requests[track.video_id] == 1


async def _ask_within(
    client: httpx.AsyncClient, track: Track, scope: trio.CancelScope
) -> None:
    with scope:
        await client.get("/stream", params={"v": track.video_id})


async def test_disconnect_releases_stream_and_pool(
    running: RunningApp, track: Track
) -> None:
    async with httpx.AsyncClient(base_url=running.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            async with http.stream(
                "GET", "/proxy", params={"v": track.video_id}
            ) as response:
                assert response.status_code == 200
                # aiter_raw is an async generator, typed as a plain iterator.
                chunks = cast(AsyncGenerator[bytes, None], response.aiter_raw())
                async with aclosing(chunks):
                    async for chunk in chunks:
                        assert chunk
                        break
                assert running.services.streams.active == 1
    await wait_until_idle(running)


async def test_revoked_url_is_resolved_again(
    client: httpx.AsyncClient, running: RunningApp, standin: StandIn, track: Track
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        first = await client.get("/stream", params={"v": track.video_id})
        assert first.status_code == 200
        standin.revoke(track.video_id)
        response = await client.get(
            "/proxy", params={"v": track.video_id}, headers={"Range": "bytes=0-99"}
        )
    assert response.status_code == 206
    assert response.content == standin.audio_bytes(track.video_id, "high")[:100]
    assert standin.stats.watch_requests[track.video_id] == 2
    assert running.services.resolver.stats.extractions == 2


async def test_refused_twice_is_502(
    client: httpx.AsyncClient, standin: StandIn, track: Track
) -> None:
    standin.set_fault(track.video_id, Fault(status=403))
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/proxy", params={"v": track.video_id})
    assert_json_error(response, 502)
    assert standin.stats.watch_requests[track.video_id] == 2


async def test_reset_before_headers_is_502_json(
    client: httpx.AsyncClient, running: RunningApp, standin: StandIn, track: Track
) -> None:
    standin.set_fault(track.video_id, Fault(reset_before_headers=True))
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/proxy", params={"v": track.video_id})
    assert_json_error(response, 502)
    await wait_until_idle(running)


async def test_upstream_500_is_502_json(
    client: httpx.AsyncClient, standin: StandIn, track: Track
) -> None:
    standin.set_fault(track.video_id, Fault(status=500))
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/proxy", params={"v": track.video_id})
    body = assert_json_error(response, 502)
    assert "500" in str(body["error"])


async def test_reset_mid_body_aborts_response(
    running: RunningApp, standin: StandIn, track: Track
) -> None:
    standin.set_fault(track.video_id, Fault(reset_after_bytes=300_000))
    async with httpx.AsyncClient(base_url=running.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S), pytest.raises(httpx.RemoteProtocolError):
            await http.get("/proxy", params={"v": track.video_id})
    await wait_until_idle(running)
    assert running.services.streams.aborted_total == 1


async def test_slow_upstream_is_not_held_back(
    running: RunningApp, standin: StandIn, track: Track
) -> None:
    # A throttled host sends 1 KiB pieces at 64 kB/s. The proxy passes them on
    # within a fraction of a second instead of waiting for a full chunk.
    standin.set_fault(track.video_id, Fault(pace_bytes_per_s=64_000))
    received = bytearray()
    lags: list[int] = []

    async def watch_lag() -> None:
        while True:
            lags.append(standin.stats.media_bytes_sent - len(received))
            await trio.sleep(0.01)

    async with (
        httpx.AsyncClient(base_url=running.url) as http,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(watch_lag)
        with trio.fail_after(STEP_TIMEOUT_S):
            await read_proxy(http, track.video_id, received, 96 * 1024)
        nursery.cancel_scope.cancel()
    source = standin.audio_bytes(track.video_id, "high")
    assert bytes(received) == source[: len(received)]
    # Joining up to a full 64 KiB chunk would leave the listener that far behind.
    assert max(lags) < 32 * 1024, max(lags)
    await wait_until_idle(running)


async def test_bytes_before_reset_reach_listener(
    running: RunningApp, standin: StandIn, track: Track
) -> None:
    # 30,000 bytes arrive together: a first chunk of one piece goes on, and
    # the rest waits to be joined when the upstream resets.
    standin.set_fault(track.video_id, Fault(reset_after_bytes=30_000, times=1))
    received = bytearray()
    async with httpx.AsyncClient(base_url=running.url) as http:
        with (
            trio.fail_after(STEP_TIMEOUT_S),
            pytest.raises(httpx.RemoteProtocolError),
        ):
            await read_proxy(http, track.video_id, received, 10**9)
    assert bytes(received) == standin.audio_bytes(track.video_id, "high")[:30_000]
    await wait_until_idle(running)


async def test_range_unit_is_case_insensitive(
    client: httpx.AsyncClient, standin: StandIn, track: Track
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/proxy", params={"v": track.video_id}, headers={"Range": "BYTES=0-9"}
        )
    assert response.status_code == 206
    assert response.content == standin.audio_bytes(track.video_id, "high")[:10]
    assert standin.stats.last_media_headers["range"] == "bytes=0-9"


@pytest.mark.parametrize(
    ("stall_after_bytes", "range_header"),
    # A short body read whole, and a long one that stalls before its first byte.
    [(50, "bytes=0-999"), (0, None)],
)
async def test_stall_before_response_is_504_json(
    standin: StandIn,
    settings: Settings,
    track: Track,
    stall_after_bytes: int,
    range_header: str | None,
) -> None:
    standin.set_fault(
        track.video_id, Fault(stall_after_bytes=stall_after_bytes, times=1)
    )
    headers = {} if range_header is None else {"Range": range_header}
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(read_timeout_s=0.5), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                response = await http.get(
                    "/proxy", params={"v": track.video_id}, headers=headers
                )
        await wait_until_idle(running)
        shutdown.set()
    assert_json_error(response, 504)


@pytest.mark.parametrize("range_header", [None, "bytes=0-16384"])
async def test_reset_before_first_byte_is_502_json(
    running: RunningApp, standin: StandIn, track: Track, range_header: str | None
) -> None:
    # The body is longer than a short one, so it streams through a pump.
    standin.set_fault(track.video_id, Fault(reset_after_bytes=0, times=1))
    headers = {} if range_header is None else {"Range": range_header}
    async with httpx.AsyncClient(base_url=running.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            response = await http.get(
                "/proxy", params={"v": track.video_id}, headers=headers
            )
    assert_json_error(response, 502)
    await wait_until_idle(running)
    assert running.services.client_streams == {}


async def test_short_range_reset_is_502_json(
    running: RunningApp, standin: StandIn, track: Track
) -> None:
    # A short body is read whole before the response starts, so a failure
    # while reading it still gets a JSON error.
    standin.set_fault(track.video_id, Fault(reset_after_bytes=50, times=1))
    async with httpx.AsyncClient(base_url=running.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            response = await http.get(
                "/proxy", params={"v": track.video_id}, headers={"Range": "bytes=0-999"}
            )
            again = await http.get(
                "/proxy", params={"v": track.video_id}, headers={"Range": "bytes=0-999"}
            )
    assert_json_error(response, 502)
    assert again.status_code == 206
    assert again.content == standin.audio_bytes(track.video_id, "high")[:1000]
    assert running.services.client_streams == {}


async def test_stall_mid_body_aborts_response(
    standin: StandIn, settings: object, track: Track
) -> None:
    from .conftest import start_app

    quick = settings.replace(read_timeout_s=0.5)  # type: ignore[attr-defined]
    standin.set_fault(track.video_id, Fault(stall_after_bytes=200_000))
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(nursery, quick, shutdown)
        async with httpx.AsyncClient(base_url=running.url) as http:
            with (
                trio.fail_after(STEP_TIMEOUT_S),
                pytest.raises(httpx.RemoteProtocolError),
            ):
                await http.get("/proxy", params={"v": track.video_id})
        await wait_until_idle(running)
        shutdown.set()


@pytest.mark.parametrize("range_header", [None, "bytes=0-99"])
async def test_compressed_media_is_502_json(
    client: httpx.AsyncClient, standin: StandIn, track: Track, range_header: str | None
) -> None:
    # A host that compresses despite Accept-Encoding: identity; its byte
    # ranges would not address the media file.
    standin.gzip_bodies = True
    headers = {} if range_header is None else {"Range": range_header}
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/proxy", params={"v": track.video_id}, headers=headers
        )
    body = assert_json_error(response, 502)
    assert "Content-Encoding" in body["error"]


async def test_first_bytes_before_full_chunk(
    running: RunningApp, standin: StandIn, track: Track
) -> None:
    # The upstream sends less than one full chunk, then nothing more.
    standin.set_fault(track.video_id, Fault(stall_after_bytes=20_000))
    received = bytearray()
    async with httpx.AsyncClient(base_url=running.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            response = await read_proxy(http, track.video_id, received, 16 * 1024)
    assert response.status_code == 200
    assert 16 * 1024 <= len(received) <= 20_000
    await wait_until_idle(running)


async def test_error_body_is_json_with_cors(client: httpx.AsyncClient) -> None:
    origin = "http://localhost:5173"
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/stream?v=bad", headers={"Origin": origin})
    assert_json_error(response, 400)
    assert response.headers["access-control-allow-origin"] == origin


async def test_prefetch_then_stream_is_cache_hit(
    client: httpx.AsyncClient, running: RunningApp, track: Track
) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/prefetch", params={"v": track.video_id})
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "warming"
        assert body["videoId"] == track.video_id
        assert body["message"]
        await wait_for(lambda: running.services.prefetch_pending == 0)
        again = await client.get("/prefetch", params={"v": track.video_id})
        assert again.status_code == 202
        stream = await client.get("/stream", params={"v": track.video_id})
    assert stream.json()["cached"] is True
    assert running.services.resolver.stats.extractions == 1
    assert running.services.upstream.pool_state().idle >= 1


async def test_health_reports_state(client: httpx.AsyncClient, track: Track) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        await client.get("/stream", params={"v": track.video_id})
        response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["uptime"] >= 0
    assert body["memory"]["rss"] > 1_000_000
    assert body["caches"]["streams"]["size"] == 1
    assert body["caches"]["streams"]["misses"] == 1
    assert body["streams"]["active"] == 0
    assert body["extraction"]["total"] == 1
    assert body["extraction"]["limit"] == 3
    assert set(body["pool"]) == {"connections", "idle", "active"}
    assert json.dumps(body)


async def test_slow_listener_holds_back_upstream(
    tmp_path: Path, settings: Settings
) -> None:
    # A 10-minute track: 53 MB at high quality, far more than socket buffers.
    long_track = Track("LongTrack_1", "Long Track", "Bench Band", 600)
    standin = StandIn(catalog=(*CATALOG, long_track))
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(standin.serve)
        own = settings.replace(
            watch_url_template=standin.watch_url_template,
            upstream_ca_file=standin.write_ca_pem(tmp_path / "long-ca.pem"),
        )
        running = await start_app(nursery, own, shutdown)
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                async with http.stream(
                    "GET", "/proxy", params={"v": long_track.video_id}
                ) as response:
                    size = int(response.headers["content-length"])
                    # Read nothing for a while: the pump must wait, not buffer.
                    await trio.sleep(1)
                    sent_while_paused = standin.stats.media_bytes_sent
        await wait_until_idle(running)
        shutdown.set()
        nursery.cancel_scope.cancel()
    assert size > 50_000_000
    assert sent_while_paused < size // 4


async def test_prefetch_queue_full_is_503(settings: Settings) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(prefetch_max_pending=1), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                first = await http.get("/prefetch", params={"v": CATALOG[0].video_id})
                second = await http.get("/prefetch", params={"v": CATALOG[1].video_id})
        shutdown.set()
    assert first.status_code == 202
    assert_json_error(second, 503)
    assert second.headers["retry-after"] == "5"

"""Rate limits, client addresses, the host allow-list and secrets, end to end."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from voyo_trio import Settings
from voyo_trio._ratelimit import RateLimiter
from voyo_trio._services import _rate_limit_settings
from voyo_trio.standin import CATALOG, Fault, StandIn

from .conftest import STEP_TIMEOUT_S, RunningApp, start_app, wait_for
from .test_stream import assert_json_error


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@asynccontextmanager
async def serve_with(
    settings: Settings, clock: FakeClock, **changes: object
) -> AsyncIterator[RunningApp]:
    limited = settings.replace(rate_limit_enabled=True, **changes)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(nursery, limited, shutdown)
        running.services.limiter = RateLimiter(
            _rate_limit_settings(limited), clock=clock
        )
        yield running
        shutdown.set()


@pytest.fixture
async def limited(settings: Settings, clock: FakeClock) -> AsyncIterator[RunningApp]:
    async with serve_with(
        settings, clock, rate_limit_requests=3, rate_limit_extractions=2
    ) as running:
        yield running


@pytest.fixture
async def behind_proxy(
    settings: Settings, clock: FakeClock
) -> AsyncIterator[RunningApp]:
    async with serve_with(
        settings,
        clock,
        rate_limit_requests=2,
        trusted_proxy_hops=1,
        rate_limit_max_clients=50,
    ) as running:
        yield running


async def test_general_budget_trips_and_recovers(
    limited: RunningApp, clock: FakeClock
) -> None:
    origin = "http://localhost:5173"
    async with httpx.AsyncClient(
        base_url=limited.url, headers={"Origin": origin}
    ) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            statuses = [
                (await http.get("/search?q=paper")).status_code for _ in range(3)
            ]
            over = await http.get("/search?q=paper")
            health = await http.get("/health")
            clock.now += 20
            after_third_of_window = await http.get("/search?q=paper")
    assert statuses == [200, 200, 200]
    body = assert_json_error(over, 429)
    assert body["reason"] == "requests"
    assert body["retryAfter"] == 20
    assert over.headers["retry-after"] == "20"
    assert over.headers["access-control-allow-origin"] == origin
    assert health.status_code == 200
    assert health.json()["rateLimit"]["rejections"]["requests"] == 1
    assert after_third_of_window.status_code == 200


async def test_range_requests_of_one_playback_are_free(limited: RunningApp) -> None:
    video_id = CATALOG[0].video_id
    async with httpx.AsyncClient(base_url=limited.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            statuses = []
            for start in range(0, 10_000, 1000):
                response = await http.get(
                    "/proxy",
                    params={"v": video_id},
                    headers={"Range": f"bytes={start}-{start + 99}"},
                )
                statuses.append(response.status_code)
            other_routes = [
                (await http.get("/search?q=x")).status_code for _ in range(3)
            ]
    assert statuses == [206] * 10
    assert other_routes == [200, 200, 429]


async def test_cache_hits_do_not_charge_extractions(
    limited: RunningApp, clock: FakeClock
) -> None:
    ids = [track.video_id for track in CATALOG[:3]]
    async with httpx.AsyncClient(base_url=limited.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            first = await http.get("/stream", params={"v": ids[0]})
            hit = await http.get("/stream", params={"v": ids[0]})
            second = await http.get("/stream", params={"v": ids[1]})
            clock.now += 60  # refill the general budget only
            third = await http.get("/stream", params={"v": ids[2]})
    assert [first.status_code, hit.status_code, second.status_code] == [200, 200, 200]
    assert hit.json()["cached"] is True
    assert third.status_code == 200


async def test_extraction_budget_trips_on_misses(
    settings: Settings, clock: FakeClock
) -> None:
    async with serve_with(
        settings, clock, rate_limit_requests=100, rate_limit_extractions=2
    ) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                ok = [
                    (await http.get("/stream", params={"v": t.video_id})).status_code
                    for t in CATALOG[:2]
                ]
                over = await http.get("/stream", params={"v": CATALOG[2].video_id})
                hit = await http.get("/stream", params={"v": CATALOG[0].video_id})
                clock.now += 30
                recovered = await http.get("/stream", params={"v": CATALOG[2].video_id})
        assert ok == [200, 200]
        assert assert_json_error(over, 429)["reason"] == "extractions"
        assert hit.status_code == 200
        assert recovered.status_code == 200
        assert running.services.resolver.stats.extractions == 3


async def test_global_extraction_budget(settings: Settings, clock: FakeClock) -> None:
    async with serve_with(
        settings,
        clock,
        rate_limit_requests=100,
        rate_limit_global_extractions=1,
        trusted_proxy_hops=1,
    ) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                one = await http.get(
                    "/stream",
                    params={"v": CATALOG[0].video_id},
                    headers={"X-Forwarded-For": "10.0.0.1"},
                )
                two = await http.get(
                    "/stream",
                    params={"v": CATALOG[1].video_id},
                    headers={"X-Forwarded-For": "10.0.0.2"},
                )
        assert one.status_code == 200
        assert assert_json_error(two, 429)["reason"] == "global_extractions"


async def test_ipv6_prefix_shares_budget(
    behind_proxy: RunningApp,
) -> None:
    async with httpx.AsyncClient(base_url=behind_proxy.url) as http:

        async def search_from(address: str) -> int:
            headers = {"X-Forwarded-For": address}
            return (await http.get("/search?q=a", headers=headers)).status_code

        with trio.fail_after(STEP_TIMEOUT_S):
            # Three addresses of one /64: the budget of two requests is shared.
            same_prefix = [await search_from(f"2001:db8:1:2::{i}") for i in range(1, 4)]
            other_prefix = await search_from("2001:db8:1:3::1")
            health = (await http.get("/health")).json()
    assert same_prefix == [200, 200, 429]
    assert other_prefix == 200
    assert health["rateLimit"]["clients"] == 2


async def _proxy_first_bytes(http: httpx.AsyncClient, video_id: str) -> httpx.Response:
    with trio.fail_after(STEP_TIMEOUT_S):
        return await http.get(
            "/proxy", params={"v": video_id}, headers={"Range": "bytes=0-9"}
        )


async def test_rejected_play_starts_no_boost(
    settings: Settings, clock: FakeClock
) -> None:
    async with serve_with(
        settings,
        clock,
        boost_downloads=True,
        rate_limit_requests=100,
        rate_limit_extractions=1,
    ) as running:
        downloads = running.services.downloads
        async with httpx.AsyncClient(base_url=running.url) as http:
            played = await _proxy_first_bytes(http, CATALOG[0].video_id)
            rejected = await _proxy_first_bytes(http, CATALOG[1].video_id)
            await wait_for(lambda: not downloads.jobs)
        assert played.status_code == 206
        assert assert_json_error(rejected, 429)["reason"] == "extractions"
        assert downloads.completed == 1
        assert [t.video_id for t in running.services.library.tracks()] == [
            CATALOG[0].video_id
        ]


async def test_unknown_track_starts_no_boost(
    settings: Settings, clock: FakeClock
) -> None:
    async with serve_with(
        settings, clock, boost_downloads=True, rate_limit_requests=100
    ) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await _proxy_first_bytes(http, "zzzzzzzzzzz")
        assert_json_error(response, 404)
        assert running.services.downloads.jobs == {}
        assert running.services.downloads.failed == 0


async def test_boosts_leave_half_the_global_budget(
    settings: Settings, clock: FakeClock
) -> None:
    async with serve_with(
        settings,
        clock,
        boost_downloads=True,
        rate_limit_requests=100,
        rate_limit_global_extractions=4,
    ) as running:
        downloads = running.services.downloads
        async with httpx.AsyncClient(base_url=running.url) as http:
            statuses = []
            for track in CATALOG[:3]:
                statuses.append(
                    (await _proxy_first_bytes(http, track.video_id)).status_code
                )
                await wait_for(lambda: not downloads.jobs)
        # Only the first play's boost fit above the reserve, and all three
        # plays still found an extraction.
        assert statuses == [206, 206, 206]
        assert downloads.completed == 1


async def test_playback_ranges_boost_once(
    settings: Settings, clock: FakeClock, standin: StandIn
) -> None:
    video_id = CATALOG[0].video_id
    async with serve_with(
        settings, clock, boost_downloads=True, rate_limit_requests=100
    ) as running:
        downloads = running.services.downloads
        async with httpx.AsyncClient(base_url=running.url) as http:
            for _ in range(3):
                assert (await _proxy_first_bytes(http, video_id)).status_code == 206
                await wait_for(lambda: not downloads.jobs)
            with trio.fail_after(STEP_TIMEOUT_S):
                head = await http.head("/proxy", params={"v": CATALOG[1].video_id})
        assert head.status_code == 200
        assert downloads.jobs == {}
        assert downloads.completed == 1
        # One watch page for the stream, one for the only download.
        assert standin.stats.watch_requests[video_id] == 2
        assert standin.stats.watch_requests[CATALOG[1].video_id] == 1


async def test_stored_track_boost_skips_ytdlp(
    settings: Settings, clock: FakeClock, standin: StandIn
) -> None:
    video_id = CATALOG[0].video_id
    async with serve_with(
        settings, clock, boost_downloads=True, rate_limit_requests=100
    ) as running:
        downloads = running.services.downloads
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                stored = await http.get("/download", params={"v": video_id})
                # Video streams do not come from the library, so this boosts.
                video = await http.get(
                    "/stream", params={"v": video_id, "type": "video"}
                )
            await wait_for(lambda: not downloads.jobs)
        assert stored.status_code == 200
        assert video.status_code == 200
        # Two watch pages, for the download and the video extraction. The
        # boost found the file and fetched none.
        assert standin.stats.watch_requests[video_id] == 2
        assert downloads.completed == 1


async def test_spoofed_forwarded_for_keys_on_peer(limited: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=limited.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            statuses = [
                (
                    await http.get(
                        "/search?q=a", headers={"X-Forwarded-For": f"203.0.113.{i}"}
                    )
                ).status_code
                for i in range(4)
            ]
            health = (await http.get("/health")).json()
    assert statuses == [200, 200, 200, 429]
    assert health["rateLimit"]["clients"] == 1


async def test_trusted_hop_keys_on_forwarded_entry(behind_proxy: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=behind_proxy.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            # The client may prepend anything; the proxy appends the real address.
            alice = [
                (
                    await http.get(
                        "/search?q=a",
                        headers={"X-Forwarded-For": f"6.6.6.{i}, 198.51.100.7"},
                    )
                ).status_code
                for i in range(3)
            ]
            bob = await http.get(
                "/search?q=a", headers={"X-Forwarded-For": "198.51.100.8"}
            )
    assert alice == [200, 200, 429]
    assert bob.status_code == 200


async def test_tracked_clients_are_capped(behind_proxy: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=behind_proxy.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S * 3):
            for i in range(300):
                await http.get(
                    "/nope", headers={"X-Forwarded-For": f"10.1.{i // 256}.{i % 256}"}
                )
            health = (await http.get("/health")).json()
    assert health["rateLimit"]["clients"] == 50
    assert health["rateLimit"]["evictions"] == 250


async def test_rate_limit_off(settings: Settings, clock: FakeClock) -> None:
    async with serve_with(
        settings, clock, rate_limit_requests=0, rate_limit_extractions=0
    ) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                statuses = {
                    (await http.get("/search?q=a")).status_code for _ in range(10)
                }
        assert statuses == {200}


async def test_foreign_media_host_is_refused(
    settings: Settings, track: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="voyo_trio")
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(media_hosts=("*.googlevideo.com",)), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                response = await http.get("/proxy", params={"v": CATALOG[0].video_id})
        shutdown.set()
    assert_json_error(response, 502)
    assert any(
        "rejected upstream host '127.0.0.1'" in r.getMessage() for r in caplog.records
    )


async def test_redirect_to_foreign_host_is_refused(
    client: httpx.AsyncClient, standin: StandIn
) -> None:
    video_id = CATALOG[0].video_id
    standin.set_fault(
        video_id, Fault(status=302, location="https://evil.example/steal")
    )
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/proxy", params={"v": video_id})
    assert_json_error(response, 502)
    assert "evil.example" not in response.text


@pytest.mark.parametrize(
    "location",
    [
        "https://[::1/x",
        "https://127.0.0.1]/x",
        "https://127.0.0.1:abc/x",
        "https://127.0.0.1/\x7f",
        "https://127.0.0.1/" + "a" * 66_000,
    ],
)
async def test_malformed_redirect_is_502_json(
    client: httpx.AsyncClient, standin: StandIn, location: str
) -> None:
    video_id = CATALOG[0].video_id
    standin.set_fault(video_id, Fault(status=302, location=location, times=1))
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get("/proxy", params={"v": video_id})
    assert_json_error(response, 502)


async def test_redirect_to_allowed_host_is_followed(
    client: httpx.AsyncClient, standin: StandIn
) -> None:
    video_id = CATALOG[0].video_id
    target = standin.media_url(video_id, "low")
    standin.set_fault(video_id, Fault(status=302, location=target, times=1))
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/proxy", params={"v": video_id}, headers={"Range": "bytes=0-9"}
        )
    assert response.status_code == 206
    assert response.content == standin.audio_bytes(video_id, "low")[:10]


async def test_upstream_urls_never_leak(
    client: httpx.AsyncClient, standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    video_id = CATALOG[0].video_id
    with trio.fail_after(STEP_TIMEOUT_S):
        responses = [
            await client.get("/stream", params={"v": video_id}),
            await client.get(
                "/proxy", params={"v": video_id}, headers={"Range": "bytes=0-9"}
            ),
            await client.get("/prefetch", params={"v": CATALOG[1].video_id}),
        ]
        standin.set_fault(video_id, Fault(status=403))
        responses.append(await client.get("/proxy", params={"v": video_id}))
        standin.set_fault(video_id, Fault(reset_before_headers=True))
        responses.append(await client.get("/proxy", params={"v": video_id}))
        responses.append(await client.get("/health"))
    for response in responses:
        visible = response.text if response.status_code != 206 else ""
        visible += " ".join(f"{k}: {v}" for k, v in response.headers.items())
        assert "/media/" not in visible
        assert "sig=" not in visible
        assert f":{standin.port}" not in visible
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            assert "sig=" not in record.getMessage(), record.getMessage()
            assert "/media/" not in record.getMessage(), record.getMessage()


async def test_api_key_absent_from_failing_search(
    settings: Settings, standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "AIza-fake-key-for-tests-0123456789"
    standin.search_status = 500
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await start_app(
            nursery, settings.replace(yt_api_key=secret), shutdown
        )
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                response = await http.get("/search", params={"q": "anything"})
                health = await http.get("/health")
        shutdown.set()
    assert_json_error(response, 502)
    assert secret not in response.text
    assert secret not in health.text
    assert standin.stats.search_requests == 1
    assert caplog.records
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.exc_info or "")


async def test_library_range_requests_are_free(limited: RunningApp) -> None:
    video_id = CATALOG[0].video_id
    async with httpx.AsyncClient(base_url=limited.url) as http:
        with trio.fail_after(STEP_TIMEOUT_S):
            stored = await http.get("/download", params={"v": video_id})
            path = stored.json()["path"]
            statuses = [
                (
                    await http.get(
                        path, headers={"Range": f"bytes={i * 100}-{i * 100 + 9}"}
                    )
                ).status_code
                for i in range(8)
            ]
    assert stored.status_code == 200
    assert statuses == [206] * 8


async def test_open_streams_per_client_capped(
    settings: Settings, clock: FakeClock
) -> None:
    video_id = CATALOG[0].video_id
    async with serve_with(settings, clock, max_streams_per_client=2) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            with trio.fail_after(STEP_TIMEOUT_S):
                async with (
                    http.stream("GET", "/proxy", params={"v": video_id}) as one,
                    http.stream("GET", "/proxy", params={"v": video_id}) as two,
                ):
                    third = await http.get("/proxy", params={"v": video_id})
                    assert one.status_code == 200
                    assert two.status_code == 200
                streams = running.services.client_streams
                await wait_for(lambda: not streams)
                after = await http.get(
                    "/proxy", params={"v": video_id}, headers={"Range": "bytes=0-0"}
                )
        assert assert_json_error(third, 429)["reason"] == "streams"
        assert after.status_code == 206


async def test_forged_log_lines_are_escaped(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voyo_trio.access")
    with trio.fail_after(STEP_TIMEOUT_S):
        await client.get("/nope%0A2026-12-04 INFO voyo_trio.access: GET /forged%1B[31m")
    (record,) = [r for r in caplog.records if r.name == "voyo_trio.access"]
    assert "\n" not in record.getMessage()
    assert "\x1b" not in record.getMessage()
    assert "\\n2026-12-04" in record.getMessage()


async def test_odd_host_header_gives_relative_urls(client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.get(
            "/stream",
            params={"v": CATALOG[0].video_id},
            headers={"Host": "evil.example/x?y="},
        )
    assert response.status_code == 200
    assert response.json()["url"].startswith("/proxy?v=")


async def test_method_not_allowed_has_allow(client: httpx.AsyncClient) -> None:
    with trio.fail_after(STEP_TIMEOUT_S):
        response = await client.put("/stream")
    assert_json_error(response, 405)
    assert "GET" in response.headers["allow"]

"""Unit tests of the pure parts: settings, ids, cache, single flight, ranges."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from quart import Response

import voyo_trio
from voyo_trio import (
    InvalidInput,
    Settings,
    SettingsError,
    decode_voyo_id,
    encode_voyo_id,
    parse_track_ref,
)
from voyo_trio._cache import TTLCache
from voyo_trio._cors import CorsPolicy
from voyo_trio._proxy import StreamSupervisor, _Joiner, _StreamState, clean_range
from voyo_trio._resolver import Kind, Quality, format_spec, url_expiry
from voyo_trio._singleflight import FlightCancelled, SingleFlight
from voyo_trio._threads import ThreadCounts, run_in_worker, thread_counts
from voyo_trio._upstream import host_allowed

from .conftest import wait_for

VIDEO_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def test_public_names_are_exported() -> None:
    assert sorted(voyo_trio.__all__) == voyo_trio.__all__
    for name in voyo_trio.__all__:
        assert hasattr(voyo_trio, name), name


def test_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.extract_concurrency == 3
    assert settings.extract_timeout_s == 30
    assert settings.stream_cache_ttl_s == 4 * 3600
    assert settings.cors_origins == ("http://localhost:5173", "http://localhost:3000")
    assert settings.yt_api_key is None


def test_settings_read_environment(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("")
    settings = Settings.from_env(
        {
            "VOYO_PORT": "8080",
            "VOYO_READ_TIMEOUT_S": "2.5",
            "VOYO_CORS_ORIGINS": "https://a.example, https://b.example",
            "VOYO_UPSTREAM_CA_FILE": str(ca_file),
            "YT_API_KEY": "secret-key",
        }
    )
    assert settings.port == 8080
    assert settings.read_timeout_s == 2.5
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.upstream_ca_file == ca_file
    assert settings.yt_api_key == "secret-key"
    assert "secret-key" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VOYO_PORT", "http"),
        ("VOYO_PORT", "70000"),
        ("VOYO_EXTRACT_CONCURRENCY", "0"),
        ("VOYO_EXTRACT_TIMEOUT_S", "nan"),
        ("VOYO_READ_TIMEOUT_S", "-1"),
        ("VOYO_LOG_LEVEL", "LOUD"),
        ("VOYO_CORS_ORIGINS", "localhost:5173"),
        ("VOYO_WATCH_URL_TEMPLATE", "https://example.com/watch"),
        ("VOYO_PUBLIC_BASE_URL", "ftp://example.com"),
        ("VOYO_UPSTREAM_CA_FILE", "/no/such/ca.pem"),
    ],
)
def test_settings_invalid_value_names_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert variable in str(caught.value)


@given(st.text(alphabet=VIDEO_ID_CHARS, min_size=11, max_size=11))
def test_voyo_id_round_trips(video_id: str) -> None:
    voyo_id = encode_voyo_id(video_id)
    assert voyo_id.startswith("vyo_")
    assert "=" not in voyo_id
    assert decode_voyo_id(voyo_id) == video_id
    assert parse_track_ref(voyo_id) == video_id
    assert parse_track_ref(video_id) == video_id


def test_voyo_id_known_value() -> None:
    assert encode_voyo_id("dQw4w9WgXcQ") == "vyo_ZFF3NHc5V2dYY1E"


@given(st.text(max_size=40))
def test_track_ref_rejects_or_returns_valid_id(raw: str) -> None:
    try:
        video_id = parse_track_ref(raw)
    except InvalidInput:
        return
    assert len(video_id) == 11
    assert set(video_id) <= set(VIDEO_ID_CHARS)


def test_cache_expires_by_clock() -> None:
    now = [0.0]
    cache: TTLCache[str, int] = TTLCache(
        max_entries=10, default_ttl_s=100, clock=lambda: now[0]
    )
    cache.set("a", 1, ttl_s=10)
    assert cache.get("a") == 1
    now[0] = 10.0
    assert cache.get("a") is None
    assert cache.stats.expirations == 1
    assert cache.stats.hits == 1
    assert cache.stats.misses == 1


def test_cache_ttl_capped_by_default() -> None:
    now = [0.0]
    cache: TTLCache[str, int] = TTLCache(
        max_entries=10, default_ttl_s=5, clock=lambda: now[0]
    )
    cache.set("a", 1, ttl_s=1000)
    now[0] = 5.0
    assert cache.get("a") is None


def test_cache_nonpositive_ttl_not_stored() -> None:
    cache: TTLCache[str, int] = TTLCache(max_entries=10, default_ttl_s=5)
    cache.set("a", 1, ttl_s=-3)
    assert len(cache) == 0


def test_cache_evicts_least_recently_used() -> None:
    cache: TTLCache[str, int] = TTLCache(max_entries=2, default_ttl_s=100)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1
    cache.set("c", 3)
    assert cache.get("b") is None
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    assert cache.stats.evictions == 1


def test_cache_byte_budget() -> None:
    cache: TTLCache[str, bytes] = TTLCache(
        max_entries=100, default_ttl_s=100, max_bytes=10
    )
    cache.set("a", b"x" * 4, size_bytes=4)
    cache.set("b", b"x" * 4, size_bytes=4)
    cache.set("c", b"x" * 4, size_bytes=4)
    assert cache.get("a") is None
    assert cache.total_bytes == 8
    cache.set("huge", b"x" * 11, size_bytes=11)
    assert cache.get("huge") is None
    assert cache.total_bytes == 8


def test_cache_sweep_drops_expired_only() -> None:
    now = [0.0]
    cache: TTLCache[int, int] = TTLCache(
        max_entries=100, default_ttl_s=100, clock=lambda: now[0]
    )
    for key in range(10):
        cache.set(key, key, ttl_s=key + 1)
    now[0] = 5.0
    assert cache.sweep() == 5
    assert len(cache) == 5
    assert cache.get(9) == 9


async def test_single_flight_shares_one_run() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    runs = 0
    results: list[tuple[int, bool]] = []

    async def work() -> int:
        nonlocal runs
        runs += 1
        await trio.sleep(1)
        return 42

    async with trio.open_nursery() as background, trio.open_nursery() as callers:
        for _ in range(10):
            callers.start_soon(_collect, flights, work, background, results)
    assert runs == 1
    assert sorted(results) == [(42, False)] * 9 + [(42, True)]


async def _collect(
    flights: SingleFlight[str, int],
    work: object,
    nursery: trio.Nursery,
    results: list[tuple[int, bool]],
) -> None:
    results.append(await flights.run("key", work, nursery))  # type: ignore[arg-type]


async def test_single_flight_survives_leader_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flights: SingleFlight[str, int] = SingleFlight()

    async def work() -> int:
        await trio.sleep(10)
        return 7

    async with trio.open_nursery() as background:
        with trio.move_on_after(1):
            await flights.run("key", work, background)
        value, leader = await flights.run("key", work, background)
    assert value == 7
    assert leader is False
    assert trio.current_time() == pytest.approx(10)
    assert len(flights) == 0


async def test_single_flight_error_reaches_every_waiter() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    errors: list[BaseException] = []

    async def work() -> int:
        await trio.sleep(0.01)
        raise InvalidInput("bad")

    async def wait_for_error(background: trio.Nursery) -> None:
        try:
            await flights.run("key", work, background)
        except InvalidInput as error:
            errors.append(error)

    async with trio.open_nursery() as background, trio.open_nursery() as callers:
        for _ in range(3):
            callers.start_soon(wait_for_error, background)
    assert len(errors) == 3


async def test_single_flight_cancelled_work_fails_waiters() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    caught: list[BaseException] = []

    async def work() -> int:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def waiter(background: trio.Nursery) -> None:
        try:
            await flights.run("key", work, background)
        except FlightCancelled as error:
            caught.append(error)

    async with trio.open_nursery() as callers, trio.open_nursery() as background:
        callers.start_soon(waiter, background)
        await trio.testing.wait_all_tasks_blocked()
        background.cancel_scope.cancel()
    assert len(caught) == 1


async def test_worker_thread_counted_until_end() -> None:
    release = threading.Event()
    started = threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(10)
        return "done"

    limiter = trio.CapacityLimiter(1)
    assert await run_in_worker(str.upper, "ok", limiter=limiter) == "OK"
    assert thread_counts() == ThreadCounts(running=0, abandoned=0)
    with trio.move_on_after(5) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(run_in_worker, blocking, limiter=limiter))
            await trio.to_thread.run_sync(started.wait, 5)
            assert thread_counts() == ThreadCounts(running=1, abandoned=0)
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert thread_counts() == ThreadCounts(running=1, abandoned=1)
    release.set()
    await wait_for(lambda: thread_counts().running == 0, timeout_s=5)
    assert thread_counts() == ThreadCounts(running=0, abandoned=0)


@pytest.mark.parametrize(
    ("receiver_delay_s", "next_chunk_bytes"),
    [(None, 64 * 1024), (0.01, 64 * 1024), (1.0, 16 * 1024)],
)
async def test_chunk_size_follows_listener(
    autojump_clock: trio.testing.MockClock,
    receiver_delay_s: float | None,
    next_chunk_bytes: int,
) -> None:
    # None: the body is already waiting when the chunk is ready.
    supervisor = StreamSupervisor(Settings(stream_chunk_bytes=64 * 1024))
    send, receive = trio.open_memory_channel[bytes](0)
    state = _StreamState("abcdefghijk")
    received: list[bytes] = []

    async def body() -> None:
        if receiver_delay_s is not None:
            await trio.sleep(receiver_delay_s)
        received.append(await receive.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(body)
        if receiver_delay_s is None:
            await trio.testing.wait_all_tasks_blocked()
        size = await supervisor._send_chunk(send, b"chunk", state)
    assert size == next_chunk_bytes
    assert received == [b"chunk"]
    assert state.bytes_sent == len(b"chunk")


def test_joiner_cuts_chunks_at_size() -> None:
    joiner = _Joiner()
    # The first piece has no piece before it, so it goes on alone.
    joiner.add(b"first", now=0.0)
    assert joiner.take(20_000) == b"first"
    pieces = [bytes([n]) * 16384 for n in range(3)]
    chunks: list[bytes] = []
    for n, piece in enumerate(pieces):
        joiner.add(piece, now=0.001 * (n + 1))
        while (chunk := joiner.take(20_000)) is not None:
            chunks.append(chunk)
    chunks.append(joiner.take_all())
    assert [len(chunk) for chunk in chunks] == [20_000, 20_000, 9152]
    assert b"".join(chunks) == b"".join(pieces)


def test_joiner_sends_slow_pieces_at_once() -> None:
    joiner = _Joiner()
    joiner.add(b"a" * 1024, now=10.0)
    assert joiner.take(65536) == b"a" * 1024
    joiner.add(b"b" * 1024, now=10.001)
    assert joiner.take(65536) is None
    joiner.add(b"c" * 1024, now=10.002)
    assert joiner.take(65536) is None
    # This piece came long after the one before, so all that waits goes out.
    joiner.add(b"d" * 1024, now=10.2)
    assert joiner.take(65536) == b"b" * 1024 + b"c" * 1024 + b"d" * 1024
    assert joiner.pending_bytes == 0
    joiner.add(b"e" * 1024, now=10.201)
    assert joiner.take(65536) is None


def test_joiner_sends_after_oldest_waits() -> None:
    joiner = _Joiner()
    joiner.add(b"a", now=0.0)
    assert joiner.take(65536) == b"a"
    # Pieces 20 ms apart: no single gap is long, but the oldest waits too long.
    for n in range(1, 4):
        joiner.add(b"x", now=0.02 * n)
        assert joiner.take(65536) is None
    joiner.add(b"y", now=0.08)
    assert joiner.take(65536) == b"xxxy"


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        (None, "Origin"),
        ("Accept-Encoding", "Accept-Encoding, Origin"),
        ("accept-encoding, origin", "accept-encoding, origin"),
        ("X-Origin-Hint", "X-Origin-Hint, Origin"),
    ],
)
def test_cors_adds_origin_to_vary(vary: str | None, expected: str) -> None:
    response = Response("")
    if vary is not None:
        response.headers["Vary"] = vary
    CorsPolicy(["http://localhost:5173"]).apply(response, "http://localhost:5173")
    assert response.headers["Vary"] == expected
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-1", "bytes=0-1"),
        ("bytes=100-", "bytes=100-"),
        ("bytes=-500", "bytes=-500"),
        (" bytes=0-1 ", "bytes=0-1"),
        ("BYTES=0-1", "bytes=0-1"),
        ("Bytes=-5", "bytes=-5"),
        ("bytes=0-1, 5-9", None),
        ("bytes=" + "9" * 19 + "-", None),
        ("bytes=a-b", None),
        ("items=0-1", None),
        ("bytes=0-1\r\nX-Evil: 1", None),
        ("bytes=" + "1" * 300 + "-", None),
        (None, None),
    ],
)
def test_clean_range(value: str | None, expected: str | None) -> None:
    assert clean_range(value) == expected


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://rr1---sn-abc.googlevideo.com/videoplayback", True),
        ("https://googlevideo.com/videoplayback", False),
        ("https://googlevideo.com.evil.example/videoplayback", False),
        ("http://rr1.googlevideo.com/videoplayback", False),
        ("https://evil.example/?host=x.googlevideo.com", False),
        ("https://127.0.0.1:4443/media", True),
        ("https://RR1.GOOGLEVIDEO.COM./x", True),
        ("file:///etc/passwd", False),
    ],
)
def test_host_allow_list(url: str, allowed: bool) -> None:
    assert host_allowed(url, ("*.googlevideo.com", "127.0.0.1")) is allowed


def test_format_spec_differs_by_quality() -> None:
    for kind in Kind:
        specs = {format_spec(kind, quality) for quality in Quality}
        assert len(specs) == 3


def test_url_expiry() -> None:
    assert url_expiry("https://x.googlevideo.com/v?expire=1700000000&id=1") == 1.7e9
    assert url_expiry("https://x.googlevideo.com/v?id=1") is None
    assert url_expiry("https://x.googlevideo.com/v?expire=soon") is None

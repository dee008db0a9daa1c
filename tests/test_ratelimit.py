"""Unit tests of the token-bucket rate limiter and of client address selection.

Every limiter test runs on a fake clock, so times and ``retry_after_s`` values
are exact and no test sleeps.
"""

from __future__ import annotations

import ipaddress
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voyo_trio import _clientip
from voyo_trio._clientip import client_address, client_key, forwarded_entries
from voyo_trio._errors import RateLimited
from voyo_trio._ratelimit import (
    REASONS,
    RateLimiter,
    RateLimitSettings,
    TokenBucket,
)

PEER = "10.0.0.1"


class FakeClock:
    """A monotonic clock that moves only when a test calls :meth:`advance`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_limiter(clock: FakeClock, **overrides: object) -> RateLimiter:
    settings = RateLimitSettings(**overrides)  # type: ignore[arg-type]
    return RateLimiter(settings, clock=clock)


def spend_requests(limiter: RateLimiter, client: str, count: int) -> None:
    for _ in range(count):
        limiter.check_request(client)


def spend_extractions(limiter: RateLimiter, client: str, count: int) -> None:
    for _ in range(count):
        limiter.check_extraction(client)


def request_error(limiter: RateLimiter, client: str) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        limiter.check_request(client)
    return caught.value


def extraction_error(limiter: RateLimiter, client: str) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        limiter.check_extraction(client)
    return caught.value


# TokenBucket


def test_bucket_starts_full() -> None:
    bucket = TokenBucket(60, 60.0, now=0.0)
    assert bucket.tokens(0.0) == 60.0


def test_bucket_take_until_empty() -> None:
    bucket = TokenBucket(3, 60.0, now=0.0)
    waits = [bucket.take(0.0) for _ in range(4)]
    assert waits == [0.0, 0.0, 0.0, 20.0]


def test_bucket_refills_half_in_half_window() -> None:
    bucket = TokenBucket(60, 60.0, now=0.0)
    for _ in range(60):
        bucket.take(0.0)
    assert bucket.tokens(30.0) == 30.0


def test_bucket_refill_stops_at_capacity() -> None:
    bucket = TokenBucket(10, 60.0, now=0.0)
    bucket.take(0.0)
    assert bucket.tokens(600.0) == 10.0


def test_bucket_wait_of_partial_token() -> None:
    bucket = TokenBucket(10, 60.0, now=0.0)
    for _ in range(10):
        bucket.take(0.0)
    assert bucket.wait_s(3.0) == 3.0


def test_bucket_is_full() -> None:
    bucket = TokenBucket(10, 60.0, now=0.0)
    bucket.take(0.0)
    assert not bucket.is_full(5.0)
    assert bucket.is_full(6.0)


def test_bucket_burst_of_uneven_interval() -> None:
    # 60 s / 7 is no exact float, and every one of the 7 tokens still passes.
    bucket = TokenBucket(7, 60.0, now=0.1)
    waits = [bucket.take(0.1) for _ in range(7)]
    assert waits == [0.0] * 7
    assert bucket.take(0.1) > 0


def test_bucket_wait_is_positive_just_before_refill() -> None:
    bucket = TokenBucket(1, 60.0, now=0.0)
    bucket.take(0.0)
    assert bucket.wait_s(59.999999) > 0


@pytest.mark.parametrize(
    ("capacity", "window_s"),
    [(0, 60.0), (-1, 60.0), (10, 0.0), (10, float("inf")), (2, 1e-9)],
)
def test_bucket_rejects_invalid_budget(capacity: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="invalid"):
        TokenBucket(capacity, window_s, now=0.0)


# RateLimitSettings


def test_settings_defaults() -> None:
    settings = RateLimitSettings()
    assert settings.enabled is True
    assert settings.requests_per_window == 60
    assert settings.extractions_per_window == 10
    assert settings.global_extractions_per_window == 300
    assert settings.window_s == 60.0
    assert settings.max_clients == 10_000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("requests_per_window", -1),
        ("extractions_per_window", -1),
        ("global_extractions_per_window", -1),
        ("window_s", 0.0),
        ("window_s", float("inf")),
        ("window_s", float("nan")),
        ("requests_per_window", 61e9),
        ("requests_per_window", 1.5),
        ("max_clients", 0),
    ],
)
def test_settings_reject_invalid_value(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        RateLimitSettings(**{name: value})  # type: ignore[arg-type]


# Per-client request budget


def test_requests_trip_at_limit(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    spend_requests(limiter, PEER, 60)
    error = request_error(limiter, PEER)
    assert error.reason == "requests"
    assert error.retry_after_s == 1.0
    assert str(error) == (
        "rate limit of 60 requests per 60 s per client exceeded: retry in 1 s"
    )


def test_requests_recover_after_window(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    spend_requests(limiter, PEER, 60)
    clock.advance(60.0)
    spend_requests(limiter, PEER, 60)
    assert request_error(limiter, PEER).retry_after_s == 1.0


def test_requests_partial_refill(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    spend_requests(limiter, PEER, 60)
    clock.advance(30.0)
    spend_requests(limiter, PEER, 30)
    assert request_error(limiter, PEER).retry_after_s == 1.0


def test_requests_retry_after_of_partial_token(clock: FakeClock) -> None:
    limiter = make_limiter(clock, requests_per_window=4)
    spend_requests(limiter, PEER, 4)
    clock.advance(5.0)
    error = request_error(limiter, PEER)
    assert error.retry_after_s == 10.0
    assert str(error).endswith("retry in 10 s")


def test_requests_message_rounds_retry_up(clock: FakeClock) -> None:
    limiter = make_limiter(clock, requests_per_window=4)
    spend_requests(limiter, PEER, 4)
    clock.advance(14.5)
    error = request_error(limiter, PEER)
    assert error.retry_after_s == 0.5
    assert str(error).endswith("retry in 1 s")


def test_requests_rejection_takes_no_token(clock: FakeClock) -> None:
    limiter = make_limiter(clock, requests_per_window=4)
    spend_requests(limiter, PEER, 4)
    for _ in range(5):
        request_error(limiter, PEER)
    clock.advance(15.0)
    limiter.check_request(PEER)
    assert request_error(limiter, PEER).retry_after_s == 15.0


def test_requests_budgets_are_per_client(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    spend_requests(limiter, "10.0.0.1", 60)
    spend_requests(limiter, "10.0.0.2", 60)
    assert request_error(limiter, "10.0.0.1").reason == "requests"


def test_requests_off(clock: FakeClock) -> None:
    limiter = make_limiter(clock, requests_per_window=0)
    spend_requests(limiter, PEER, 1000)
    assert len(limiter) == 0


def test_requests_do_not_spend_extractions(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    spend_requests(limiter, PEER, 60)
    spend_extractions(limiter, PEER, 10)
    assert extraction_error(limiter, PEER).reason == "extractions"


# Per-client and global extraction budgets


def test_extractions_trip_at_limit(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    spend_extractions(limiter, PEER, 10)
    error = extraction_error(limiter, PEER)
    assert error.reason == "extractions"
    assert error.retry_after_s == 6.0
    assert str(error) == (
        "rate limit of 10 extractions per 60 s per client exceeded: retry in 6 s"
    )


def test_extractions_recover_after_window(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    spend_extractions(limiter, PEER, 10)
    clock.advance(60.0)
    spend_extractions(limiter, PEER, 10)
    assert extraction_error(limiter, PEER).retry_after_s == 6.0


def test_extractions_partial_refill(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    spend_extractions(limiter, PEER, 10)
    clock.advance(30.0)
    spend_extractions(limiter, PEER, 5)
    assert extraction_error(limiter, PEER).retry_after_s == 6.0


def test_extractions_do_not_spend_requests(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    spend_extractions(limiter, PEER, 10)
    spend_requests(limiter, PEER, 60)
    assert request_error(limiter, PEER).reason == "requests"


def test_extractions_off_keeps_global(clock: FakeClock) -> None:
    limiter = make_limiter(
        clock, extractions_per_window=0, global_extractions_per_window=20
    )
    spend_extractions(limiter, PEER, 20)
    assert extraction_error(limiter, PEER).reason == "global_extractions"


def test_global_extractions_trip_at_limit(clock: FakeClock) -> None:
    limiter = make_limiter(clock, global_extractions_per_window=5)
    for index in range(5):
        limiter.check_extraction(f"10.0.1.{index}")
    error = extraction_error(limiter, "10.0.2.1")
    assert error.reason == "global_extractions"
    assert error.retry_after_s == 12.0
    assert str(error) == (
        "rate limit of 5 extractions per 60 s for all clients exceeded: retry in 12 s"
    )


def test_global_extractions_recover_after_window(clock: FakeClock) -> None:
    limiter = make_limiter(clock, global_extractions_per_window=5)
    for index in range(5):
        limiter.check_extraction(f"10.0.1.{index}")
    clock.advance(60.0)
    for index in range(5):
        limiter.check_extraction(f"10.0.1.{index}")
    assert extraction_error(limiter, PEER).retry_after_s == 12.0


def test_global_extractions_shared_across_clients(clock: FakeClock) -> None:
    limiter = make_limiter(clock, global_extractions_per_window=300)
    for index in range(30):
        spend_extractions(limiter, f"10.0.1.{index}", 10)
    assert extraction_error(limiter, "10.0.2.1").reason == "global_extractions"


def test_global_rejection_keeps_client_token(clock: FakeClock) -> None:
    # One token a minute for the client, one a second for everyone together.
    limiter = make_limiter(
        clock, extractions_per_window=1, global_extractions_per_window=60
    )
    for index in range(60):
        limiter.check_extraction(f"10.0.1.{index}")
    for _ in range(3):
        assert extraction_error(limiter, PEER).reason == "global_extractions"
    clock.advance(1.0)
    # Had a rejection taken the client's token, only 1/60 of it would be back.
    limiter.check_extraction(PEER)
    clock.advance(1.0)
    assert extraction_error(limiter, PEER).reason == "extractions"


def test_client_rejection_keeps_global_token(clock: FakeClock) -> None:
    limiter = make_limiter(
        clock, extractions_per_window=1, global_extractions_per_window=2
    )
    limiter.check_extraction(PEER)
    for _ in range(3):
        assert extraction_error(limiter, PEER).reason == "extractions"
    limiter.check_extraction("10.0.0.2")
    assert extraction_error(limiter, "10.0.0.3").reason == "global_extractions"


def test_extraction_both_spent_names_later_refill(clock: FakeClock) -> None:
    limiter = make_limiter(
        clock, extractions_per_window=1, global_extractions_per_window=2
    )
    limiter.check_extraction(PEER)
    limiter.check_extraction("10.0.0.2")
    error = extraction_error(limiter, PEER)
    assert error.reason == "extractions"
    assert error.retry_after_s == 60.0


def test_extraction_both_spent_global_later(clock: FakeClock) -> None:
    limiter = make_limiter(
        clock, extractions_per_window=2, global_extractions_per_window=1
    )
    limiter.check_extraction(PEER)
    clock.advance(45.0)
    # The client has 1.75 tokens and the global budget is 15 s from one.
    error = extraction_error(limiter, PEER)
    assert error.reason == "global_extractions"
    assert error.retry_after_s == 15.0


def test_global_extractions_off(clock: FakeClock) -> None:
    limiter = make_limiter(clock, global_extractions_per_window=0)
    for index in range(100):
        spend_extractions(limiter, f"10.0.1.{index}", 10)
    assert extraction_error(limiter, "10.0.1.0").reason == "extractions"


def test_all_extraction_budgets_off(clock: FakeClock) -> None:
    limiter = make_limiter(
        clock, extractions_per_window=0, global_extractions_per_window=0
    )
    spend_extractions(limiter, PEER, 1000)
    assert len(limiter) == 0


def test_limiter_disabled(clock: FakeClock) -> None:
    limiter = make_limiter(clock, enabled=False)
    spend_requests(limiter, PEER, 1000)
    spend_extractions(limiter, PEER, 1000)
    assert len(limiter) == 0


# Client table


def test_table_stays_at_max_clients_under_flood(clock: FakeClock) -> None:
    limiter = make_limiter(clock, max_clients=1000)
    for index in range(10_000):
        limiter.check_request(str(ipaddress.IPv4Address(0x0A000000 + index)))
    assert len(limiter) == 1000
    assert limiter.state().evictions == 9000


def test_table_flood_of_extractions_stays_capped(clock: FakeClock) -> None:
    limiter = make_limiter(clock, max_clients=1000, global_extractions_per_window=0)
    for index in range(10_000):
        limiter.check_extraction(str(ipaddress.IPv6Address(index)))
    assert len(limiter) == 1000


def test_table_evicts_least_recently_seen(clock: FakeClock) -> None:
    limiter = make_limiter(clock, max_clients=3)
    for client in ("a", "b", "c"):
        limiter.check_request(client)
    limiter.check_extraction("a")
    limiter.check_request("d")
    assert "a" in limiter
    assert "b" not in limiter
    assert "c" in limiter
    assert "d" in limiter


def test_table_evicted_client_starts_full(clock: FakeClock) -> None:
    limiter = make_limiter(clock, max_clients=1, requests_per_window=2)
    spend_requests(limiter, "a", 2)
    limiter.check_request("b")
    spend_requests(limiter, "a", 2)
    assert request_error(limiter, "a").reason == "requests"


def test_sweep_drops_idle_clients_only(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    limiter.check_request("idle")
    clock.advance(30.0)
    spend_requests(limiter, "busy", 60)
    clock.advance(30.0)
    assert limiter.sweep() == 1
    assert "idle" not in limiter
    assert "busy" in limiter


def test_sweep_keeps_client_with_spent_extractions(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    limiter.check_extraction(PEER)
    clock.advance(5.9)
    assert limiter.sweep() == 0
    assert PEER in limiter


def test_sweep_of_idle_table_empties_it(clock: FakeClock) -> None:
    limiter = make_limiter(clock)
    for index in range(100):
        limiter.check_request(f"10.0.1.{index}")
    clock.advance(60.0)
    assert limiter.sweep() == 100
    assert len(limiter) == 0
    assert limiter.state().swept == 100


# State for the health endpoint


def test_state_reports_limits(clock: FakeClock) -> None:
    limiter = make_limiter(clock, requests_per_window=5, max_clients=50)
    state = limiter.state()
    assert state.enabled is True
    assert state.requests_per_window == 5
    assert state.extractions_per_window == 10
    assert state.global_extractions_per_window == 300
    assert state.window_s == 60.0
    assert state.max_clients == 50
    assert state.global_extractions_available == 300


def test_state_counts_clients_and_rejections(clock: FakeClock) -> None:
    limiter = make_limiter(clock, requests_per_window=1, extractions_per_window=1)
    limiter.check_request("a")
    limiter.check_extraction("b")
    request_error(limiter, "a")
    request_error(limiter, "a")
    extraction_error(limiter, "b")
    state = limiter.state()
    assert state.clients == 2
    assert state.rejections == {
        "requests": 2,
        "extractions": 1,
        "global_extractions": 0,
    }
    assert state.global_extractions_available == 299


def test_state_rejection_keys_are_reasons(clock: FakeClock) -> None:
    assert tuple(make_limiter(clock).state().rejections) == REASONS


def test_state_is_a_snapshot(clock: FakeClock) -> None:
    limiter = make_limiter(clock, requests_per_window=1)
    state = limiter.state()
    limiter.check_request(PEER)
    request_error(limiter, PEER)
    assert state.rejections["requests"] == 0


def test_state_global_budget_off(clock: FakeClock) -> None:
    limiter = make_limiter(clock, global_extractions_per_window=0)
    assert limiter.state().global_extractions_available is None


# client_address


def test_client_address_zero_hops_ignores_spoofed_header() -> None:
    assert client_address(PEER, "203.0.113.9", trusted_hops=0) == PEER


def test_client_address_zero_hops_ignores_header_lines() -> None:
    lines = ["203.0.113.9", "198.51.100.7"]
    assert client_address(PEER, lines, trusted_hops=0) == PEER


def test_client_address_one_hop_takes_last_entry() -> None:
    lines = ["203.0.113.9, 198.51.100.7", "192.0.2.44"]
    assert client_address(PEER, lines, trusted_hops=1) == "192.0.2.44"


def test_client_address_two_hops_across_lines() -> None:
    lines = ["203.0.113.9", "198.51.100.7, 192.0.2.44", " 192.0.2.45 "]
    assert client_address(PEER, lines, trusted_hops=2) == "192.0.2.44"


def test_client_address_two_hops_in_one_line() -> None:
    header = "203.0.113.9,198.51.100.7 ,  192.0.2.45"
    assert client_address(PEER, header, trusted_hops=2) == "198.51.100.7"


def test_client_address_hops_reach_first_entry() -> None:
    lines = ["203.0.113.9", "198.51.100.7, 192.0.2.44"]
    assert client_address(PEER, lines, trusted_hops=3) == "203.0.113.9"


def test_client_address_one_hop_ignores_client_prefix() -> None:
    # The client wrote the first entry, and the proxy appended the real address.
    header = "127.0.0.1, 198.51.100.7"
    assert client_address(PEER, header, trusted_hops=1) == "198.51.100.7"


def test_client_address_skips_empty_entries() -> None:
    lines = ["203.0.113.9, ,", "", "198.51.100.7,"]
    assert client_address(PEER, lines, trusted_hops=2) == "203.0.113.9"


def test_client_address_too_few_entries_uses_peer() -> None:
    assert client_address(PEER, "198.51.100.7", trusted_hops=2) == PEER


def test_client_address_missing_header_uses_peer() -> None:
    assert client_address(PEER, None, trusted_hops=1) == PEER


def test_client_address_empty_header_list_uses_peer() -> None:
    assert client_address(PEER, [], trusted_hops=1) == PEER


@pytest.mark.parametrize(
    "entry",
    [
        "unknown",
        "_hidden",
        "1.2.3",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3.4:",
        "1.2.3.4:port",
        "1.2.3.4:\u00b2",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[1.2.3.4]:80",
        "::1:80:",
        "2001:db8::1::2",
        "example.com",
    ],
)
def test_client_address_invalid_entry_uses_peer(entry: str) -> None:
    header = f"203.0.113.9, {entry}"
    assert client_address(PEER, header, trusted_hops=1) == PEER


def test_client_address_invalid_entry_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_clientip, "_logged_fallbacks", set())
    with caplog.at_level(logging.WARNING, logger="voyo_trio._clientip"):
        client_address(PEER, "junk", trusted_hops=1)
        client_address(PEER, "more junk", trusted_hops=1)
    assert len(caplog.records) == 1
    assert "'junk' is not an IP address" in caplog.records[0].getMessage()


def test_client_address_too_few_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_clientip, "_logged_fallbacks", set())
    with caplog.at_level(logging.WARNING, logger="voyo_trio._clientip"):
        client_address(PEER, None, trusted_hops=2)
        client_address(PEER, "192.0.2.1", trusted_hops=2)
    assert len(caplog.records) == 1
    assert "fewer than trusted_hops=2" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:0db8::0001", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:c000:0201", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_client_address_normalizes_ipv6(entry: str, expected: str) -> None:
    assert client_address(PEER, entry, trusted_hops=1) == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("192.0.2.1:567", "192.0.2.1"),
        ("[::1]:80", "::1"),
        ("[::1]", "::1"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("[::ffff:192.0.2.1]:8080", "192.0.2.1"),
    ],
)
def test_client_address_strips_ports(entry: str, expected: str) -> None:
    assert client_address(PEER, entry, trusted_hops=1) == expected


def test_client_address_normalizes_mapped_peer() -> None:
    assert client_address("::ffff:10.0.0.1", None, trusted_hops=0) == PEER


def test_client_address_normalizes_ipv6_peer() -> None:
    assert client_address("2001:DB8::0:1", None, trusted_hops=0) == "2001:db8::1"


def test_client_address_keeps_peer_that_is_not_ip() -> None:
    assert client_address("/run/voyo.sock", None, trusted_hops=0) == "/run/voyo.sock"


@pytest.mark.parametrize("peer", [None, ""])
def test_client_address_missing_peer_is_unknown(peer: str | None) -> None:
    assert client_address(peer, "192.0.2.1", trusted_hops=0) == "unknown"


def test_client_address_missing_peer_with_hop() -> None:
    assert client_address(None, "192.0.2.1", trusted_hops=1) == "192.0.2.1"


def test_client_address_rejects_negative_hops() -> None:
    with pytest.raises(ValueError, match="trusted_hops"):
        client_address(PEER, None, trusted_hops=-1)


@pytest.mark.parametrize(
    ("address", "prefix", "key"),
    [
        ("2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", 64, "2001:db8:1:3::/64"),
        ("2001:db8:1:2::1", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2::1", 128, "2001:db8:1:2::1"),
        ("192.0.2.7", 64, "192.0.2.7"),
        ("64:ff9b::c000:207", 64, "192.0.2.7"),
        ("::ffff:0:c000:207", 64, "192.0.2.7"),
        ("::c000:207", 64, "192.0.2.7"),
        ("::1", 64, "::1"),
        ("unknown", 64, "unknown"),
    ],
)
def test_client_key_groups_ipv6_by_prefix(address: str, prefix: int, key: str) -> None:
    assert client_key(address, prefix) == key


def test_forwarded_entries_split_and_strip() -> None:
    lines = [" 192.0.2.1 ,192.0.2.2", "", " , 192.0.2.3"]
    assert forwarded_entries(lines) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


def is_normalized_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or address.scope_id is not None
    ):
        return False
    return str(address) == text


ip_text = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address}]:443"),
    st.ip_addresses(v=4).map(lambda address: f"{address}:80"),
)
header_text = st.one_of(
    st.text(),
    st.text(alphabet="0123456789abcdefABCDEF.:[]%, \t"),
    st.lists(ip_text).map(", ".join),
)
header_value = st.one_of(st.none(), header_text, st.lists(header_text, max_size=5))
peer_text = st.one_of(st.none(), st.text(), ip_text)


@given(peer=peer_text, header=header_value, hops=st.integers(0, 4))
def test_client_address_returns_peer_or_ip(
    peer: str | None, header: list[str] | str | None, hops: int
) -> None:
    result = client_address(peer, header, trusted_hops=hops)
    assert result in (peer, "unknown") or is_normalized_ip(result)


@given(entries=st.lists(st.ip_addresses(), min_size=1), data=st.data())
def test_client_address_picks_entry_from_right(
    entries: list[ipaddress.IPv4Address | ipaddress.IPv6Address], data: st.DataObject
) -> None:
    hops = data.draw(st.integers(1, len(entries)))
    header = ", ".join(str(entry) for entry in entries)
    expected = entries[-hops]
    if isinstance(expected, ipaddress.IPv6Address) and expected.ipv4_mapped:
        expected = expected.ipv4_mapped
    assert client_address(PEER, header, trusted_hops=hops) == str(expected)

"""Load generator, run as its own process so the harness is not the bottleneck.

``python -m bench._load fetch`` downloads whole files and times them.
``python -m bench._load listen`` runs N listeners that each play a stream at
an audio bit rate. Both print one JSON object on stdout.

A listener models a player: it starts playing once ``prebuffer_s`` of audio
has arrived, then consumes ``rate`` bytes a second. It reads from its socket only while
it has less than ``readahead_s`` of audio buffered, so a server that sends
faster meets backpressure. When the buffer runs empty the player
stalls until more bytes arrive. A listener kept up if it played ``seconds``
of audio without a stall.
"""

from __future__ import annotations

import argparse
import json
import math
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import trio

from ._http1 import open_get

_FETCH_READ_BYTES = 256 * 1024
_LISTEN_READ_BYTES = 64 * 1024
# A listener reads again once this much room is free in its read-ahead;
# larger reads mean fewer wakeups of the load process.
_MIN_READ_ROOM_BYTES = 16 * 1024
# The load process measures its own scheduling lag with a task that sleeps
# this long and records how late it woke up.
_LAG_PROBE_S = 0.05


@dataclass
class Playback:
    """Play position of one listener, advanced exactly at each event."""

    rate: float
    prebuffer_bytes: float
    target_bytes: float
    received: int = 0
    played: float = 0.0
    first_byte_at: float | None = None
    playing_since: float | None = None
    last_update: float = 0.0
    current_stall_s: float = 0.0
    longest_stall_s: float = 0.0
    total_stall_s: float = 0.0

    @property
    def finished(self) -> bool:
        return self.played >= self.target_bytes

    @property
    def buffered(self) -> float:
        return self.received - self.played

    def advance(self, now: float) -> None:
        """Play from the last update to ``now`` with the bytes already here."""
        if self.playing_since is None or self.finished:
            self.last_update = now
            return
        elapsed = now - self.last_update
        playable_s = self.buffered / self.rate
        if playable_s >= elapsed:
            self.played += elapsed * self.rate
        else:
            # The buffer ran dry part way: the rest of the interval is a stall.
            self.played = float(self.received)
            stalled = elapsed - playable_s
            self.current_stall_s += stalled
            self.total_stall_s += stalled
        self.played = min(self.played, self.target_bytes)
        self.last_update = now

    def receive(self, now: float, count: int) -> None:
        """Account for ``count`` body bytes that arrived at ``now``."""
        self.advance(now)
        if self.first_byte_at is None and count > 0:
            self.first_byte_at = now
        self.received += count
        if self.current_stall_s > 0:
            self.longest_stall_s = max(self.longest_stall_s, self.current_stall_s)
            self.current_stall_s = 0.0
        if self.playing_since is None and self.received >= self.prebuffer_bytes:
            self.playing_since = now

    def close(self, now: float) -> None:
        """Advance to ``now`` and count a stall still in progress."""
        self.advance(now)
        self.longest_stall_s = max(self.longest_stall_s, self.current_stall_s)


@dataclass
class ListenerResult:
    """Outcome of one listener; times are seconds from its start, None if never."""

    status: int | None
    error: str | None
    first_byte_s: float | None
    playing_s: float | None
    played_s: float
    longest_stall_s: float
    total_stall_s: float
    received_bytes: int

    @property
    def kept_up(self) -> bool:
        return self.error is None and self.longest_stall_s == 0.0


@dataclass(frozen=True)
class ListenPlan:
    """Parameters shared by every listener of one run."""

    url: str
    count: int
    seconds: float
    rate_bytes_s: float
    ramp_s: float
    prebuffer_s: float
    readahead_s: float
    receive_buffer_bytes: int | None
    max_segment_bytes: int | None
    grace_s: float


async def listen_one(plan: ListenPlan, delay_s: float) -> ListenerResult:
    """Run one listener after ``delay_s`` and return what it saw."""
    await trio.sleep(delay_s)
    started = trio.current_time()
    playback = Playback(
        rate=plan.rate_bytes_s,
        prebuffer_bytes=plan.rate_bytes_s * plan.prebuffer_s,
        target_bytes=plan.rate_bytes_s * plan.seconds,
        last_update=started,
    )

    # A list, so that the status survives a cancel at the deadline.
    statuses: list[int] = []
    error: str | None = None
    deadline = started + plan.seconds + plan.prebuffer_s + plan.grace_s
    with trio.move_on_at(deadline):
        try:
            await _play(plan, playback, statuses)
        except (OSError, trio.BrokenResourceError, ConnectionError) as failure:
            error = f"{type(failure).__name__}: {failure}"

    now = trio.current_time()
    playback.close(now)
    if error is None and not playback.finished:
        error = "played too little before the deadline"
    return ListenerResult(
        status=statuses[0] if statuses else None,
        error=error,
        first_byte_s=_since(playback.first_byte_at, started),
        playing_s=_since(playback.playing_since, started),
        played_s=playback.played / plan.rate_bytes_s,
        longest_stall_s=playback.longest_stall_s,
        total_stall_s=playback.total_stall_s,
        received_bytes=playback.received,
    )


def _since(moment: float | None, started: float) -> float | None:
    return None if moment is None else moment - started


async def _play(plan: ListenPlan, playback: Playback, statuses: list[int]) -> None:
    response = await open_get(
        plan.url,
        headers={"Range": "bytes=0-"},
        receive_buffer_bytes=plan.receive_buffer_bytes,
        max_segment_bytes=plan.max_segment_bytes,
    )
    statuses.append(response.status)
    readahead_bytes = plan.rate_bytes_s * plan.readahead_s
    try:
        if response.status not in (200, 206):
            raise ConnectionError(f"unexpected status {response.status}")
        while not playback.finished:
            playback.advance(trio.current_time())
            room = readahead_bytes - playback.buffered
            if room < _MIN_READ_ROOM_BYTES:
                await trio.sleep((_MIN_READ_ROOM_BYTES - room) / playback.rate)
                continue
            data = await response.read_body(min(int(room), _LISTEN_READ_BYTES))
            if not data:
                raise ConnectionError(
                    f"the body ended after {playback.received} bytes, too early"
                )
            playback.receive(trio.current_time(), len(data))
    finally:
        await response.aclose()


@dataclass
class LagProbe:
    """Largest delay between a sleep's due time and its wakeup, in seconds."""

    max_lag_s: float = 0.0

    async def run(self) -> None:
        while True:
            due = trio.current_time() + _LAG_PROBE_S
            await trio.sleep_until(due)
            self.max_lag_s = max(self.max_lag_s, trio.current_time() - due)


async def run_listeners(plan: ListenPlan, probe: LagProbe) -> list[ListenerResult]:
    """Start ``plan.count`` listeners spread evenly over the ramp."""
    results: list[ListenerResult] = []

    async def run_and_keep(delay_s: float) -> None:
        results.append(await listen_one(plan, delay_s))

    step = plan.ramp_s / plan.count if plan.count else 0.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe.run)
        async with trio.open_nursery() as listeners:
            for index in range(plan.count):
                listeners.start_soon(run_and_keep, index * step)
        nursery.cancel_scope.cancel()
    return results


@dataclass
class FetchResult:
    """One whole-file download: status, body bytes and seconds to the last byte."""

    target: str
    status: int
    bytes: int
    seconds: float


async def fetch_once(name: str, url: str, context: ssl.SSLContext) -> FetchResult:
    """Download ``url`` whole and time it from connect to the last byte."""
    started = trio.current_time()
    response = await open_get(url, ssl_context=context)
    received = 0
    try:
        while data := await response.read_body(_FETCH_READ_BYTES):
            received += len(data)
    finally:
        await response.aclose()
    return FetchResult(name, response.status, received, trio.current_time() - started)


async def run_fetches(
    targets: Sequence[tuple[str, str]], rounds: int, context: ssl.SSLContext
) -> list[FetchResult]:
    """Fetch every target once per round; the order rotates between rounds."""
    results = []
    for round_index in range(rounds):
        shift = round_index % len(targets)
        for name, url in [*targets[shift:], *targets[:shift]]:
            results.append(await fetch_once(name, url, context))
    return results


def summarize_listeners(
    plan: ListenPlan, results: list[ListenerResult], probe: LagProbe
) -> dict[str, Any]:
    """Aggregate listener results into the figures the report shows."""
    kept_up = [result for result in results if result.kept_up]
    errors = [result.error for result in results if result.error is not None]
    first_bytes = sorted(r.first_byte_s for r in results if r.first_byte_s is not None)
    stalls = [result.longest_stall_s for result in results]
    return {
        "listeners": len(results),
        "kept_up": len(kept_up),
        "kept_up_fraction": len(kept_up) / len(results) if results else 0.0,
        "longest_stall_s": max(stalls, default=0.0),
        "stalled_listeners": sum(1 for stall in stalls if stall > 0),
        "first_byte_s": _quantiles(first_bytes),
        "received_bytes": sum(result.received_bytes for result in results),
        "errors": _count_errors(errors),
        # If the load process itself woke up late by about a stall's length,
        # that stall may be its own and not the server's.
        "load_max_loop_lag_s": probe.max_lag_s,
        "plan": asdict(plan),
    }


def _quantiles(values: list[float]) -> dict[str, float | None]:
    def pick(fraction: float) -> float | None:
        if not values:
            return None
        return values[min(len(values) - 1, math.ceil(fraction * len(values)) - 1)]

    return {"p50": pick(0.5), "p99": pick(0.99), "max": pick(1.0)}


def _count_errors(errors: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for error in errors:
        key = error[:120]
        counts[key] = counts.get(key, 0) + 1
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench._load")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download whole files and time them")
    fetch.add_argument(
        "--target", action="append", required=True, help="NAME=URL, repeatable"
    )
    fetch.add_argument("--rounds", type=int, default=1, help="fetches per target")
    fetch.add_argument("--ca-file", help="PEM bundle trusted for https targets")
    listen = commands.add_parser("listen", help="play N streams at a bit rate")
    listen.add_argument("--url", required=True)
    listen.add_argument("--count", type=int, required=True, help="listeners")
    listen.add_argument("--seconds", type=float, required=True, help="audio to play")
    listen.add_argument("--rate-bps", type=float, required=True, help="bits/s")
    listen.add_argument("--ramp-s", type=float, default=1.0, help="start spread")
    listen.add_argument("--prebuffer-s", type=float, default=1.0)
    listen.add_argument("--readahead-s", type=float, default=2.0)
    listen.add_argument(
        "--receive-buffer-bytes", type=int, default=0, help="0 leaves it to the kernel"
    )
    listen.add_argument("--max-segment-bytes", type=int, default=1460)
    listen.add_argument("--grace-s", type=float, default=10.0)
    return parser


def _split_target(item: str) -> tuple[str, str]:
    name, separator, url = item.partition("=")
    if not separator or not url:
        raise SystemExit(f"invalid --target {item!r}: expected NAME=URL")
    return name, url


def _client_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "fetch":
        targets = [_split_target(item) for item in args.target]
        context = _client_context(args.ca_file)
        results = await run_fetches(targets, args.rounds, context)
        return {"fetches": [asdict(result) for result in results]}
    plan = ListenPlan(
        url=args.url,
        count=args.count,
        seconds=args.seconds,
        rate_bytes_s=args.rate_bps / 8,
        ramp_s=args.ramp_s,
        prebuffer_s=args.prebuffer_s,
        readahead_s=args.readahead_s,
        receive_buffer_bytes=args.receive_buffer_bytes or None,
        max_segment_bytes=args.max_segment_bytes or None,
        grace_s=args.grace_s,
    )
    probe = LagProbe()
    return summarize_listeners(plan, await run_listeners(plan, probe), probe)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wall_start = time.monotonic()
    summary = trio.run(_main, args)
    summary["load_cpu_s"] = time.process_time()
    summary["load_wall_s"] = time.monotonic() - wall_start
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

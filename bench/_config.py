"""Run profiles: the default counts, and the tiny ones of ``--quick``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT", "PEERS", "QUICK", "SCENARIOS", "Profile"]

PEERS = ("voyo", "node", "nginx")
SCENARIOS = ("ttfb", "throughput", "listeners")


@dataclass(frozen=True)
class Profile:
    """Every count and duration of one run. Times are in seconds or ms."""

    name: str
    # Round trips that the relay adds, in milliseconds; 0 also measures the
    # relay's own cost against a fetch that bypasses it.
    rtts_ms: tuple[float, ...] = (20.0, 0.0)
    ttfb_rounds: int = 200
    ttfb_warmup: int = 5
    range_bytes: int = 1024
    # 1,200 s of high quality audio is 105,840,044 bytes with its header.
    long_track_s: int = 1200
    throughput_rounds: int = 3
    listener_counts: tuple[int, ...] = (100, 1000)
    listen_seconds: float = 20.0
    listen_rate_bps: float = 160_000.0
    listen_ramp_s: float = 2.0
    listen_prebuffer_s: float = 1.0
    listen_readahead_s: float = 2.0
    # How long a listener may wait for playback to start. A listener that has
    # not played ``listen_seconds`` by start + prebuffer + this did not keep up.
    listen_start_grace_s: float = 30.0
    peers: tuple[str, ...] = PEERS
    scenarios: tuple[str, ...] = SCENARIOS
    seed: int = 1
    # Extra VOYO_* settings for every voyo server, as "NAME=VALUE", applied
    # after the scenario's own, for experiments such as smaller buffers.
    voyo_env: tuple[str, ...] = ()

    def voyo_settings(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Return ``base`` updated with the ``voyo_env`` settings."""
        settings = dict(base or {})
        for item in self.voyo_env:
            name, _, value = item.partition("=")
            settings[name] = value
        return settings

    def replace(self, **changes: Any) -> Profile:
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


DEFAULT = Profile("default")
QUICK = Profile(
    "quick",
    ttfb_rounds=12,
    ttfb_warmup=2,
    long_track_s=120,
    throughput_rounds=1,
    listener_counts=(20, 100),
    listen_seconds=2.0,
    listen_ramp_s=0.5,
    listen_start_grace_s=15.0,
)

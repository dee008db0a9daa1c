"""The goals a run is compared against, each marked met, missed or not run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["evaluate_targets"]

_RTT_MS = 20.0
_LISTENERS = 1000


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one entry per goal with its measured value and whether it was met."""
    ttfb = results.get("ttfb") or {}
    throughput = results.get("throughput") or {}
    listeners = results.get("listeners") or {}
    voyo_ttfb = _comparison(ttfb, "voyo")
    warm = _ttfb_row(ttfb, "voyo", "warm")
    voyo_rate = _throughput_row(throughput, "voyo")
    crowd = _listener_row(listeners, "voyo", _LISTENERS)
    return [
        _goal(
            "warm TTFB through voyo within 15% of direct warm at 20 ms RTT (p50)",
            voyo_ttfb.get("warm_over_direct_warm_p50"),
            1.15,
            lambda value, limit: value <= limit,
            "ratio",
        ),
        _goal(
            "warm voyo requests that reused a connection at 20 ms RTT",
            None if warm is None else warm["reuse_fraction"],
            0.95,
            lambda value, limit: value >= limit,
            "fraction",
        ),
        _goal(
            "voyo cold/warm p50 at 20 ms RTT near 3 (3 round trips against 1)",
            voyo_ttfb.get("cold_over_warm_p50"),
            3.0,
            lambda value, limit: abs(value - limit) <= 0.5,
            "ratio",
        ),
        _goal(
            "throughput through one voyo worker at least 150 MB/s",
            None if voyo_rate is None else voyo_rate["mb_per_s"],
            150.0,
            lambda value, limit: value >= limit,
            "MB/s",
        ),
        _goal(
            "voyo throughput at least half the Node peer's",
            throughput.get("voyo_over_node"),
            0.5,
            lambda value, limit: value >= limit,
            "ratio",
        ),
        _goal(
            "1,000 listeners at 160 kbit/s on voyo all kept up",
            None if crowd is None else crowd["kept_up_fraction"],
            1.0,
            lambda value, limit: value >= limit,
            "fraction",
        ),
        _goal(
            "voyo peak RSS with 1,000 listeners under 300 MB",
            None if crowd is None else crowd["server_peak_rss_mb"],
            300.0,
            lambda value, limit: value < limit,
            "MB",
        ),
    ]


def _goal(
    name: str,
    value: float | None,
    limit: float,
    check: Callable[[float, float], bool],
    unit: str,
) -> dict[str, Any]:
    met = None if value is None else check(value, limit)
    return {"goal": name, "value": value, "limit": limit, "unit": unit, "met": met}


def _comparison(ttfb: dict[str, Any], target: str) -> dict[str, Any]:
    for row in ttfb.get("comparisons", []):
        if row["rtt_ms"] == _RTT_MS and row["target"] == target:
            return dict(row)
    return {}


def _ttfb_row(ttfb: dict[str, Any], target: str, mode: str) -> dict[str, Any] | None:
    for row in ttfb.get("rows", []):
        if (row["rtt_ms"], row["target"], row["mode"]) == (_RTT_MS, target, mode):
            return dict(row)
    return None


def _throughput_row(throughput: dict[str, Any], target: str) -> dict[str, Any] | None:
    for row in throughput.get("rows", []):
        if row["target"] == target:
            return dict(row)
    return None


def _listener_row(
    listeners: dict[str, Any], target: str, count: int
) -> dict[str, Any] | None:
    for row in listeners.get("rows", []):
        if row["target"] == target and row["count"] == count:
            return dict(row)
    return None

"""Percentiles and ratios of measured samples."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile", "ratio", "summarize_ms"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` quantile, interpolating between closest ranks.

    This is the "linear" method of numpy.percentile. Raises ValueError for an
    empty sequence.
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    weight = position - low
    return ordered[low] * (1 - weight) + ordered[high] * weight


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Return p50, p90, p99, mean, min and max of samples in milliseconds."""
    millis = [value * 1000 for value in seconds]
    return {
        "p50_ms": percentile(millis, 0.5),
        "p90_ms": percentile(millis, 0.9),
        "p99_ms": percentile(millis, 0.99),
        "mean_ms": sum(millis) / len(millis),
        "min_ms": min(millis),
        "max_ms": max(millis),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return numerator / denominator, or None if either is missing or zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator

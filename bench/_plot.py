"""The PNG plot of cold and warm TTFB distributions, drawn with matplotlib."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["plot_ttfb"]

logger = logging.getLogger(__name__)

_COLORS = {"voyo": "tab:blue", "node": "tab:green", "nginx": "tab:red"}


def plot_ttfb(ttfb: dict[str, Any], path: Path) -> Path | None:
    """Draw one CDF panel per RTT, or return None if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        logger.warning(
            "matplotlib is not installed, so no plot was drawn; "
            "install it with: pip install -e '.[bench]'"
        )
        return None
    rtts = list(dict.fromkeys(row["rtt_ms"] for row in ttfb["rows"]))
    figure, axes = pyplot.subplots(1, len(rtts), figsize=(6 * len(rtts), 4.5))
    for axis, rtt_ms in zip(axes if len(rtts) > 1 else [axes], rtts, strict=True):
        _draw_panel(axis, [row for row in ttfb["rows"] if row["rtt_ms"] == rtt_ms])
        axis.set_title(f"TTFB of a {ttfb['range_bytes']}-byte range, RTT {rtt_ms:g} ms")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def _draw_panel(axis: Any, rows: list[dict[str, Any]]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    for row in rows:
        if not row["via_relay"]:
            continue
        samples = sorted(row["samples_ms"])
        fractions = [(index + 1) / len(samples) for index in range(len(samples))]
        axis.step(
            samples,
            fractions,
            where="post",
            color=_COLORS.get(row["target"], "black"),
            linestyle="--" if row["mode"] == "cold" else "-",
            label=f"{row['target']} {row['mode']}",
        )
    axis.set_xscale("log")
    # Plain numbers at 1, 2 and 5 per decade read better than powers of ten.
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.xaxis.set_major_formatter(plain)
    axis.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.xaxis.set_minor_formatter(plain)
    axis.set_xlabel("time to first byte (ms, log scale)")
    axis.set_ylabel("fraction of requests")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")

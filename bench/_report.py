"""Plain-text tables of a run's results, as printed on stdout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["render_report"]


def render_report(results: dict[str, Any]) -> str:
    """Render every section that the run produced as aligned text tables."""
    sections = [_header(results)]
    if results.get("ttfb"):
        sections += [_ttfb_table(results["ttfb"]), _relay_table(results["ttfb"])]
    if results.get("throughput"):
        sections.append(_throughput_table(results["throughput"]))
    if results.get("listeners"):
        sections.append(_listener_table(results["listeners"]))
    quick = results["profile"]["name"] == "quick"
    sections.append(_goal_table(results.get("targets", []), quick))
    skipped = [f"{name}: {reason}" for name, reason in results["skipped"].items()]
    if skipped:
        sections.append("Skipped peers\n" + "\n".join(f"  {line}" for line in skipped))
    return "\n\n".join(sections) + "\n"


def _header(results: dict[str, Any]) -> str:
    machine = results["machine"]
    return (
        f"voyo-trio benchmark, profile {results['profile']['name']}, "
        f"{results['generated_at']}\n"
        f"{machine['cpu_model']}, {machine['logical_cores']} logical cores, "
        f"Python {machine['python']}"
    )


def _table(
    title: str, headings: Sequence[str], rows: list[list[str]], left: int = 0
) -> str:
    """Align columns; the first ``left`` columns are left-aligned text."""
    widths = [len(heading) for heading in headings]
    for row in rows:
        widths = [
            max(width, len(cell)) for width, cell in zip(widths, row, strict=True)
        ]
    lines = [
        title,
        "  ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True)),
    ]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        cells = [
            cell.ljust(width) if index < left else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _number(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _ttfb_table(ttfb: dict[str, Any]) -> str:
    comparisons = {(c["rtt_ms"], c["target"]): c for c in ttfb["comparisons"]}
    rows = []
    for row in ttfb["rows"]:
        if not row["via_relay"]:
            continue
        comparison = comparisons.get((row["rtt_ms"], row["target"]), {})
        warm = row["mode"] == "warm"
        rows.append(
            [
                f"{row['rtt_ms']:g}",
                row["target"],
                row["mode"],
                _number(row["p50_ms"], 2),
                _number(row["p90_ms"], 2),
                _number(row["p99_ms"], 2),
                _number(100 * row["reuse_fraction"], 0, "%"),
                _number(row["server_cpu_ms_per_request"], 2),
                _number(comparison.get("cold_over_warm_p50"), 2) if warm else "",
                _number(comparison.get("warm_over_direct_warm_p50"), 3) if warm else "",
            ]
        )
    headings = [
        "RTT ms",
        "target",
        "mode",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "reused",
        "CPU ms/req",
        "cold/warm",
        "warm/direct",
    ]
    title = (
        f"Time to first byte of a {ttfb['range_bytes']}-byte range, "
        f"{ttfb['rounds']} requests per row (p50 ratios)"
    )
    return _table(title, headings, rows)


def _relay_table(ttfb: dict[str, Any]) -> str:
    by_key = {(r["rtt_ms"], r["target"], r["mode"]): r for r in ttfb["rows"]}
    rows = []
    for mode in ("warm", "cold"):
        relayed = by_key.get((0.0, "direct", mode))
        bypass = by_key.get((0.0, "direct-no-relay", mode))
        if relayed is None or bypass is None:
            continue
        rows.append(
            [
                mode,
                _number(bypass["p50_ms"], 3),
                _number(relayed["p50_ms"], 3),
                _number(relayed["p50_ms"] - bypass["p50_ms"], 3),
                _number(relayed["p99_ms"] - bypass["p99_ms"], 3),
            ]
        )
    headings = ["mode", "no relay p50", "relay p50", "added p50 ms", "added p99 ms"]
    return _table("Relay's own cost at 0 ms, direct fetch", headings, rows)


def _throughput_table(throughput: dict[str, Any]) -> str:
    rows = [
        [
            row["target"],
            str(row["fetches"]),
            _number(row["bytes_per_fetch"] / 1e6, 1),
            _number(row["mb_per_s"], 1),
            _number(row["cpu_s_per_gb"], 2),
        ]
        for row in throughput["rows"]
    ]
    headings = ["target", "fetches", "MB each", "MB/s (median)", "server CPU s/GB"]
    faster = throughput["direct_faster_than_voyo"]
    verdict = {True: "yes", False: "NO", None: "not measured"}[faster]
    title = (
        f"Throughput of one whole track, media host {throughput['media_host']}; "
        f"direct faster than voyo: {verdict}"
    )
    return _table(title, headings, rows)


def _listener_table(listeners: dict[str, Any]) -> str:
    rows = []
    for row in listeners["rows"]:
        rows.append(
            [
                str(row["count"]),
                row["target"],
                _number(100 * row["kept_up_fraction"], 1, "%"),
                _number(row["longest_stall_s"], 2),
                _number(row["first_byte_s"]["p99"], 2),
                _number(row["upstream_bytes_per_listener"] / 1e6, 2),
                _number(row["server_peak_rss_mb"], 0),
                _number(row["server_cpu_percent"], 0, "%"),
                _number(row["load_cpu_percent"], 0, "%"),
                _number(row["load_max_loop_lag_s"], 2),
                str(sum(row["errors"].values())),
            ]
        )
    headings = [
        "N",
        "target",
        "kept up",
        "max stall s",
        "first byte p99 s",
        "host MB/listener",
        "peak RSS MB",
        "CPU",
        "load CPU",
        "load lag s",
        "errors",
    ]
    title = (
        f"Listeners at {listeners['rate_bps'] / 1000:g} kbit/s for "
        f"{listeners['seconds']:g} s, media host {listeners['media_host']}"
    )
    return _table(title, headings, rows)


def _goal_table(goals: list[dict[str, Any]], quick: bool) -> str:
    rows = []
    for goal in goals:
        verdict = {True: "met", False: "MISSED", None: "not run"}[goal["met"]]
        value = "-" if goal["value"] is None else f"{goal['value']:.3g}"
        rows.append([goal["goal"], f"{value} {goal['unit']}", verdict])
    title = "Goals"
    if quick:
        title += " (quick profile: the counts are too small to judge them)"
    return _table(title, ["goal", "measured", "result"], rows, left=1)

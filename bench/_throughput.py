"""Throughput of a whole long track through each proxy and fetched directly.

The load process downloads the track from every target in rotating order,
one download at a time, while the harness reads each proxy's CPU seconds.
The media host must outrun the proxies for the figures to describe the
proxies: a proxy's rate is a lower bound of the host's, and the direct
fetch is checked against voyo's.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from statistics import median
from typing import Any

import httpx
import trio

from ._config import Profile
from ._media import LONG_TRACK_ID, QUALITY, BulkHost
from ._peers import REPO_ROOT, PeerStatus, Server, nginx_proxy, node_proxy, voyo_server
from ._procs import ResourceMonitor, bench_env
from ._stats import ratio

__all__ = ["resolve_long_track", "run_load_process", "run_throughput"]

logger = logging.getLogger(__name__)

_MB = 1_000_000
_GB = 1_000_000_000


async def run_throughput(
    profile: Profile, run_dir: Path, peers: dict[str, PeerStatus], host: BulkHost
) -> dict[str, Any]:
    """Run the scenario against every peer present, warm mode only."""
    async with AsyncExitStack() as stack:
        servers = await start_warm_servers(
            stack, run_dir, peers, host, voyo_settings=profile.voyo_settings()
        )
        await resolve_long_track(servers)
        monitors = {
            server.peer: ResourceMonitor(server.child.processes()) for server in servers
        }
        targets = [
            (server.peer, server.proxy_url(LONG_TRACK_ID, QUALITY))
            for server in servers
        ]
        targets.append(("direct", host.media_url))
        argv = ["fetch", "--rounds", str(profile.throughput_rounds)]
        argv += ["--ca-file", str(host.upstream.ca_file)]
        for name, url in targets:
            argv += ["--target", f"{name}={url}"]
        for monitor in monitors.values():
            monitor.start()
        output = await run_load_process(argv)
        cpu = {peer: monitor.cpu_seconds() for peer, monitor in monitors.items()}
    summary = _summarize(output["fetches"], cpu, host.kind)
    summary["load_cpu_s"] = output["load_cpu_s"]
    return summary


async def start_warm_servers(
    stack: AsyncExitStack,
    run_dir: Path,
    peers: dict[str, PeerStatus],
    host: BulkHost,
    voyo_settings: dict[str, str] | None = None,
    only: str | None = None,
) -> list[Server]:
    """Start the warm mode of every peer present (or of ``only``)."""
    servers = []
    for name, status in peers.items():
        if status.path is None or (only is not None and name != only):
            continue
        if name == "voyo":
            context = voyo_server(
                run_dir, host.upstream, mode="warm", settings=voyo_settings
            )
        elif name == "node":
            context = node_proxy(run_dir, host.upstream, mode="warm", node=status.path)
        else:
            context = nginx_proxy(
                run_dir, host.upstream, mode="warm", nginx=status.path
            )
        servers.append(await stack.enter_async_context(context))
    return servers


async def resolve_long_track(servers: list[Server]) -> None:
    """Ask each voyo server to resolve the long track, so it is cached."""
    async with httpx.AsyncClient(trust_env=False, timeout=60.0) as client:
        for server in servers:
            if server.peer == "voyo":
                url = f"{server.base_url}/stream"
                params = {"v": LONG_TRACK_ID, "quality": QUALITY}
                (await client.get(url, params=params)).raise_for_status()


async def run_load_process(arguments: list[str]) -> dict[str, Any]:
    """Run ``python -m bench._load`` and return the JSON it prints."""
    argv = [sys.executable, "-m", "bench._load", *arguments]
    result = await trio.run_process(
        argv,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=REPO_ROOT,
        env=bench_env(),
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"load process failed with {result.returncode}: "
            f"{result.stderr.decode(errors='replace')[-2000:]}"
        )
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def _summarize(
    fetches: list[dict[str, Any]], cpu: dict[str, float], host_kind: str
) -> dict[str, Any]:
    rows = []
    for name in dict.fromkeys(fetch["target"] for fetch in fetches):
        mine = [fetch for fetch in fetches if fetch["target"] == name]
        _check_complete(name, mine)
        rates = [fetch["bytes"] / fetch["seconds"] / _MB for fetch in mine]
        total_bytes = sum(fetch["bytes"] for fetch in mine)
        cpu_s = cpu.get(name)
        rows.append(
            {
                "target": name,
                "fetches": len(mine),
                "bytes_per_fetch": mine[0]["bytes"],
                "mb_per_s": median(rates),
                "mb_per_s_each": rates,
                "cpu_s": cpu_s,
                "cpu_s_per_gb": None if cpu_s is None else cpu_s / (total_bytes / _GB),
            }
        )
    by_name = {row["target"]: row for row in rows}
    direct = by_name["direct"]["mb_per_s"]
    proxies = [row["mb_per_s"] for row in rows if row["target"] != "direct"]
    voyo = by_name.get("voyo", {}).get("mb_per_s")
    return {
        "media_host": host_kind,
        "rows": rows,
        # A proxy cannot pass on more than the host sends, so the fastest
        # path bounds the host's rate from below.
        "media_host_min_mb_per_s": max([direct, *proxies]),
        "direct_faster_than_voyo": None if voyo is None else direct > voyo,
        "voyo_over_node": ratio(voyo, by_name.get("node", {}).get("mb_per_s")),
        "voyo_over_nginx": ratio(voyo, by_name.get("nginx", {}).get("mb_per_s")),
    }


def _check_complete(name: str, fetches: list[dict[str, Any]]) -> None:
    sizes = {fetch["bytes"] for fetch in fetches}
    statuses = {fetch["status"] for fetch in fetches}
    if statuses != {200} or len(sizes) != 1:
        raise RuntimeError(f"{name} downloads were incomplete: {fetches}")

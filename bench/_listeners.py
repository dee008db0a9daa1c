"""Many slow listeners: N players each streaming at an audio bit rate.

For each listener count and peer, a fresh proxy process serves the long
track, so one run's memory does not carry into the next. The load process
plays the streams (see ``bench._load``) while the harness samples the
proxy's RSS and CPU.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import trio

from ._config import Profile
from ._media import LONG_TRACK_ID, QUALITY, BulkHost
from ._peers import PeerStatus, Server
from ._procs import ResourceMonitor
from ._throughput import resolve_long_track, run_load_process, start_warm_servers

__all__ = ["run_listeners", "voyo_listener_settings"]

logger = logging.getLogger(__name__)


def voyo_listener_settings(count: int) -> dict[str, str]:
    """Return the voyo settings for ``count`` listeners on one address.

    Each open stream uses one pooled upstream connection, and the pool's
    default cap is 100 connections. A listener beyond the cap waits for a
    connection and fails after the pool timeout, so the cap is raised to the
    listener count, as a deployment for that many listeners must do. The
    Node agent and nginx have no such cap by default. Every listener connects
    from 127.0.0.1 but stands for a different player, so the cap on streams
    per client address is turned off.
    """
    return {
        "VOYO_POOL_MAX_CONNECTIONS": str(max(100, count)),
        "VOYO_MAX_STREAMS_PER_CLIENT": "0",
    }


async def run_listeners(
    profile: Profile, run_dir: Path, peers: dict[str, PeerStatus], host: BulkHost
) -> dict[str, Any]:
    """Run every listener count against every peer present."""
    rows = []
    for count in profile.listener_counts:
        for name, status in peers.items():
            if status.path is None:
                continue
            rows.append(await _run_one(profile, run_dir, peers, host, name, count))
            logger.info("%d listeners on %s done", count, name)
    return {
        "rate_bps": profile.listen_rate_bps,
        "seconds": profile.listen_seconds,
        "ramp_s": profile.listen_ramp_s,
        "prebuffer_s": profile.listen_prebuffer_s,
        "readahead_s": profile.listen_readahead_s,
        "start_grace_s": profile.listen_start_grace_s,
        "media_host": host.kind,
        "rows": rows,
    }


async def _run_one(
    profile: Profile,
    run_dir: Path,
    peers: dict[str, PeerStatus],
    host: BulkHost,
    name: str,
    count: int,
) -> dict[str, Any]:
    settings = profile.voyo_settings(voyo_listener_settings(count))
    async with AsyncExitStack() as stack:
        (server,) = await start_warm_servers(
            stack, run_dir, peers, host, voyo_settings=settings, only=name
        )
        await resolve_long_track([server])
        monitor = ResourceMonitor(server.child.processes())
        monitor.start()
        served_before = host.bytes_served()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(monitor.sample_forever)
            wall_start = trio.current_time()
            summary = await run_load_process(_listen_arguments(profile, server, count))
            wall_s = trio.current_time() - wall_start
            nursery.cancel_scope.cancel()
        # Read the CPU time while the server still runs: psutil cannot read a
        # process that has exited.
        cpu_s = monitor.cpu_seconds()
        health = await _voyo_health(server) if name == "voyo" else None
    # The server has stopped, so every upstream request has ended and nginx
    # has logged its size.
    served = host.bytes_served() - served_before
    return {
        "target": name,
        "count": count,
        **{key: value for key, value in summary.items() if key != "plan"},
        # Bytes the media host sent per listener, against the bytes a
        # listener received: the difference is what the proxy read ahead.
        "upstream_bytes_per_listener": served / count,
        "received_bytes_per_listener": summary["received_bytes"] / count,
        "load_cpu_percent": 100 * summary["load_cpu_s"] / summary["load_wall_s"],
        "server_peak_rss_mb": monitor.peak_rss_bytes / 1_000_000,
        "server_cpu_s": cpu_s,
        "server_cpu_percent": 100 * cpu_s / wall_s,
        "wall_s": wall_s,
        "voyo_settings": settings if name == "voyo" else None,
        "voyo_health_after": health,
    }


def _listen_arguments(profile: Profile, server: Server, count: int) -> list[str]:
    options = {
        "--url": server.proxy_url(LONG_TRACK_ID, QUALITY),
        "--count": count,
        "--seconds": profile.listen_seconds,
        "--rate-bps": profile.listen_rate_bps,
        "--ramp-s": profile.listen_ramp_s,
        "--prebuffer-s": profile.listen_prebuffer_s,
        "--readahead-s": profile.listen_readahead_s,
        "--grace-s": profile.listen_start_grace_s,
    }
    arguments = ["listen"]
    for option, value in options.items():
        arguments += [option, str(value)]
    return arguments


async def _voyo_health(server: Server) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
        response = await client.get(f"{server.base_url}/health")
        health: dict[str, Any] = response.json()
    return {key: health.get(key) for key in ("streams", "pool", "memory")}

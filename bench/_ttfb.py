"""Cold versus warm time to first byte of a small range, at each round trip.

Every proxy fetches the same stand-in track through the latency relay. The
client keeps its own connection to each proxy alive, so only the proxy's
upstream connection is cold or warm. Requests run one at a time in shuffled
rounds, so every target runs under the same conditions and each request's new
upstream connections can be counted exactly at the stand-in.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ._config import Profile
from ._media import QUALITY, SHORT_TRACK, LatencyHost, client_ssl_context, latency_host
from ._peers import PeerStatus, Server, nginx_proxy, node_proxy, voyo_server
from ._procs import ResourceMonitor
from ._stats import ratio, summarize_ms

__all__ = ["run_ttfb"]

logger = logging.getLogger(__name__)

MODES = ("cold", "warm")
_TIMEOUT_S = 10.0


@dataclass
class Target:
    """One thing to time: a proxy in a mode, or a direct fetch."""

    name: str
    mode: str
    url: str
    client: httpx.AsyncClient
    via_relay: bool = True
    monitor: ResourceMonitor | None = None
    seconds: list[float] = field(default_factory=list)
    new_connections: list[int] = field(default_factory=list)
    cpu_s: float | None = None

    @property
    def label(self) -> str:
        return f"{self.name}-{self.mode}"


async def time_first_byte(target: Target, range_bytes: int) -> float:
    """Fetch the range and return seconds from sending to the first body byte."""
    headers = {"Range": f"bytes=0-{range_bytes - 1}"}
    started = time.perf_counter()
    first_byte: float | None = None
    received = 0
    async with target.client.stream("GET", target.url, headers=headers) as response:
        async for chunk in response.aiter_raw():
            if first_byte is None:
                first_byte = time.perf_counter()
            received += len(chunk)
    if response.status_code != 206 or received != range_bytes or first_byte is None:
        raise RuntimeError(
            f"{target.label} returned {response.status_code} with {received} "
            f"bytes for a {range_bytes}-byte range"
        )
    return first_byte - started


async def run_ttfb(
    profile: Profile, run_dir: Path, peers: dict[str, PeerStatus]
) -> dict[str, Any]:
    """Run the scenario at every round trip of the profile."""
    async with latency_host(run_dir, rtt_s=0.0) as host, AsyncExitStack() as stack:
        servers = await _start_servers(profile, stack, run_dir, host, peers)
        clients = await _open_clients(stack, host)
        rows = []
        for rtt_ms in profile.rtts_ms:
            host.relay.rtt_s = rtt_ms / 1000
            targets = _targets(host, servers, clients, rtt_ms)
            await _measure(profile, targets, host.connections_accepted)
            rows.extend(_rows(rtt_ms, targets))
            logger.info("ttfb at %g ms RTT done", rtt_ms)
        pools = await _voyo_pools(clients["proxy"], servers)
    return {
        "range_bytes": profile.range_bytes,
        "rounds": profile.ttfb_rounds,
        "rows": rows,
        "comparisons": _comparisons(rows),
        "voyo_pool_after": pools,
    }


async def _start_servers(
    profile: Profile,
    stack: AsyncExitStack,
    run_dir: Path,
    host: LatencyHost,
    peers: dict[str, PeerStatus],
) -> list[Server]:
    servers = []
    voyo_settings = {
        "cold": profile.voyo_settings({"VOYO_POOL_MAX_KEEPALIVE": "0"}),
        "warm": profile.voyo_settings(),
    }
    for mode in MODES:
        if "voyo" in peers:
            servers.append(
                await stack.enter_async_context(
                    voyo_server(
                        run_dir, host.upstream, mode=mode, settings=voyo_settings[mode]
                    )
                )
            )
        node, nginx = peers.get("node"), peers.get("nginx")
        if node is not None and node.path is not None:
            servers.append(
                await stack.enter_async_context(
                    node_proxy(run_dir, host.upstream, mode=mode, node=node.path)
                )
            )
        if nginx is not None and nginx.path is not None:
            servers.append(
                await stack.enter_async_context(
                    nginx_proxy(run_dir, host.upstream, mode=mode, nginx=nginx.path)
                )
            )
    await _resolve_on_voyo(servers)
    return servers


async def _resolve_on_voyo(servers: list[Server]) -> None:
    # /stream runs yt-dlp once and caches the URL, so extraction stays out of
    # the timed requests.
    async with httpx.AsyncClient(trust_env=False, timeout=30.0) as client:
        for server in servers:
            if server.peer == "voyo":
                params = {"v": SHORT_TRACK.video_id, "quality": QUALITY}
                response = await client.get(f"{server.base_url}/stream", params=params)
                response.raise_for_status()


@asynccontextmanager
async def _client(**options: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=_TIMEOUT_S, **options) as c:
        yield c


async def _open_clients(
    stack: AsyncExitStack, host: LatencyHost
) -> dict[str, httpx.AsyncClient]:
    context = client_ssl_context(host.standin)
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    return {
        "proxy": await stack.enter_async_context(_client()),
        "warm": await stack.enter_async_context(_client(verify=context)),
        "cold": await stack.enter_async_context(
            _client(verify=context, limits=no_keepalive)
        ),
    }


def _targets(
    host: LatencyHost,
    servers: list[Server],
    clients: dict[str, httpx.AsyncClient],
    rtt_ms: float,
) -> list[Target]:
    video_id = SHORT_TRACK.video_id
    targets = [
        Target(
            server.peer,
            server.mode,
            server.proxy_url(video_id, QUALITY),
            clients["proxy"],
            monitor=ResourceMonitor(server.child.processes()),
        )
        for server in servers
    ]
    relayed = host.standin.media_url(video_id, QUALITY)
    for mode in MODES:
        targets.append(Target("direct", mode, relayed, clients[mode]))
        if rtt_ms == 0:
            bypass = host.direct_url(video_id, QUALITY)
            targets.append(
                Target("direct-no-relay", mode, bypass, clients[mode], via_relay=False)
            )
    return targets


async def _measure(
    profile: Profile, targets: list[Target], connections: Callable[[], int]
) -> None:
    for target in targets:
        for _ in range(profile.ttfb_warmup):
            await time_first_byte(target, profile.range_bytes)
    shuffler = random.Random(profile.seed)
    order = list(targets)
    for target in targets:
        if target.monitor is not None:
            target.monitor.start()
    for _ in range(profile.ttfb_rounds):
        shuffler.shuffle(order)
        for target in order:
            before = connections()
            target.seconds.append(await time_first_byte(target, profile.range_bytes))
            target.new_connections.append(connections() - before)
    for target in targets:
        if target.monitor is not None:
            target.cpu_s = target.monitor.cpu_seconds()


def _rows(rtt_ms: float, targets: list[Target]) -> list[dict[str, Any]]:
    rows = []
    for target in targets:
        reused = sum(1 for count in target.new_connections if count == 0)
        rows.append(
            {
                "rtt_ms": rtt_ms,
                "target": target.name,
                "mode": target.mode,
                "via_relay": target.via_relay,
                "samples": len(target.seconds),
                **summarize_ms(target.seconds),
                "reuse_fraction": reused / len(target.seconds),
                "new_connections": sum(target.new_connections),
                # The proxy's CPU per timed request; None for direct fetches.
                "server_cpu_ms_per_request": (
                    None
                    if target.cpu_s is None
                    else 1000 * target.cpu_s / len(target.seconds)
                ),
                "samples_ms": [round(value * 1000, 3) for value in target.seconds],
            }
        )
    return rows


def _comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cold/warm ratio per target, and each warm proxy against direct warm."""
    by_key = {(row["rtt_ms"], row["target"], row["mode"]): row for row in rows}
    comparisons = []
    for (rtt_ms, name, mode), row in by_key.items():
        if mode != "warm":
            continue
        cold = _p50(by_key.get((rtt_ms, name, "cold")))
        direct = _p50(by_key.get((rtt_ms, "direct", "warm")))
        warm = row["p50_ms"]
        comparisons.append(
            {
                "rtt_ms": rtt_ms,
                "target": name,
                "cold_over_warm_p50": ratio(cold, warm),
                "warm_over_direct_warm_p50": ratio(warm, direct),
                "warm_minus_direct_warm_p50_ms": (
                    None if direct is None else warm - direct
                ),
                # Round trips a cold request costs, from its median.
                "cold_p50_in_rtts": ratio(cold, rtt_ms),
            }
        )
    return comparisons


def _p50(row: dict[str, Any] | None) -> float | None:
    return None if row is None else float(row["p50_ms"])


async def _voyo_pools(
    client: httpx.AsyncClient, servers: list[Server]
) -> dict[str, Any]:
    pools = {}
    for server in servers:
        if server.peer == "voyo":
            health = (await client.get(f"{server.base_url}/health")).json()
            pools[server.mode] = health.get("pool")
    return pools

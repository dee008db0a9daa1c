"""Media hosts of a run: the stand-in behind the latency relay, and a bulk host.

The latency host is a StandIn whose watch pages list media URLs on the
relay, so every media byte that a proxy or a direct client fetches crosses
the relay's delay. The bulk host serves the long track for the throughput
and listener scenarios: nginx over TLS when it is on PATH, otherwise the
StandIn itself, which is slower.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from voyo_trio.standin import CATALOG, StandIn, Track

from ._peers import Upstream, nginx_argv, nginx_common
from ._procs import Child, free_port, run_child
from ._relay import LatencyRelay

__all__ = [
    "LONG_TRACK_ID",
    "SHORT_TRACK",
    "BulkHost",
    "LatencyHost",
    "bulk_host",
    "latency_host",
    "long_track",
]

logger = logging.getLogger(__name__)

LONG_TRACK_ID = "benchLong01"
SHORT_TRACK = CATALOG[0]
QUALITY = "high"
# nginx's access log of the bulk host: one body size in bytes per request.
_BYTES_LOG = "body-bytes.log"


def long_track(duration_s: int) -> Track:
    """Return the long benchmark track; high quality is 88,200 bytes a second."""
    return Track(LONG_TRACK_ID, "Long Benchmark Track", "voyo bench", duration_s)


def client_ssl_context(standin: StandIn) -> ssl.SSLContext:
    """Return a client context that trusts the stand-in's CA."""
    context = ssl.create_default_context()
    standin.ca.configure_trust(context)
    return context


@dataclass
class LatencyHost:
    """The stand-in behind the relay, and the upstream that proxies use."""

    standin: StandIn
    relay: LatencyRelay
    upstream: Upstream

    def connections_accepted(self) -> int:
        """Return how many connections the stand-in has accepted so far."""
        return self.standin.stats.connections_accepted

    def direct_url(self, video_id: str, quality: str) -> str:
        """Return a media URL that bypasses the relay."""
        relayed = self.standin.media_url(video_id, quality)
        return relayed.replace(
            f"127.0.0.1:{self.relay.port}", f"127.0.0.1:{self.standin.port}", 1
        )


@asynccontextmanager
async def latency_host(run_dir: Path, rtt_s: float) -> AsyncIterator[LatencyHost]:
    """Run a StandIn behind a LatencyRelay in this process."""
    # The relay listens first, so the stand-in's pages can name its port, and
    # learns the stand-in's port once that is listening.
    relay = LatencyRelay("127.0.0.1", 0, rtt_s=rtt_s)
    async with trio.open_nursery() as nursery:
        relay_port = await nursery.start(relay.serve)
        standin = StandIn(media_base_url=f"https://127.0.0.1:{relay_port}")
        await nursery.start(standin.serve)
        relay.target_port = standin.port
        ca_file = standin.write_ca_pem(run_dir / "latency-ca.pem")
        urls = {
            f"{SHORT_TRACK.video_id}:{QUALITY}": standin.media_url(
                SHORT_TRACK.video_id, QUALITY
            )
        }
        upstream = Upstream(standin.watch_url_template, standin.base_url, ca_file, urls)
        yield LatencyHost(standin, relay, upstream)
        nursery.cancel_scope.cancel()


@dataclass
class BulkHost:
    """The host of the long track: its kind, upstream and CA trust."""

    kind: str
    standin: StandIn
    upstream: Upstream
    child: Child | None

    @property
    def media_url(self) -> str:
        return self.upstream.media_urls[f"{LONG_TRACK_ID}:{QUALITY}"]

    def bytes_served(self) -> int:
        """Return the media body bytes sent so far, by requests that ended."""
        if self.child is None:
            return self.standin.stats.media_bytes_sent
        log = self.child.log_path.parent / "nginx-media" / _BYTES_LOG
        try:
            lines = log.read_text().split()
        except FileNotFoundError:
            return 0
        return sum(int(line) for line in lines)


@asynccontextmanager
async def bulk_host(
    run_dir: Path, duration_s: int, nginx: str | None
) -> AsyncIterator[BulkHost]:
    """Serve the long track with nginx when given, else with a StandIn."""
    track = long_track(duration_s)
    nginx_port = free_port() if nginx is not None else None
    media_base = None if nginx_port is None else f"https://127.0.0.1:{nginx_port}"
    standin = StandIn(catalog=(*CATALOG, track), media_base_url=media_base)
    async with trio.open_nursery() as nursery:
        await nursery.start(standin.serve)
        ca_file = standin.write_ca_pem(run_dir / "bulk-ca.pem")
        urls = {f"{LONG_TRACK_ID}:{QUALITY}": standin.media_url(LONG_TRACK_ID, QUALITY)}
        upstream = Upstream(standin.watch_url_template, standin.base_url, ca_file, urls)
        if nginx is None or nginx_port is None:
            yield BulkHost("stand-in", standin, upstream, None)
        else:
            async with _nginx_media(
                run_dir, standin, track, nginx, nginx_port
            ) as child:
                yield BulkHost("nginx", standin, upstream, child)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def _nginx_media(
    run_dir: Path, standin: StandIn, track: Track, nginx: str, port: int
) -> AsyncIterator[Child]:
    prefix = run_dir / "nginx-media"
    # nginx workers run as an unprivileged user when started as root, so the
    # files they serve must be world-readable.
    www = prefix / "www" / "media" / track.video_id
    www.mkdir(parents=True, mode=0o755)
    for folder in (prefix, prefix / "www", prefix / "www" / "media", www):
        folder.chmod(0o755)
    media_file = www / f"{QUALITY}.wav"
    media_file.write_bytes(standin.audio_bytes(track.video_id, QUALITY))
    media_file.chmod(0o644)
    certificate = standin.ca.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_pem.write_to_path(str(prefix / "key.pem"))
    chain = b"".join(blob.bytes() for blob in certificate.cert_chain_pems)
    (prefix / "cert.pem").write_bytes(chain)
    config_path = prefix / "nginx.conf"
    config_path.write_text(_nginx_media_config(prefix, port))
    async with run_child(
        "nginx-media", nginx_argv(nginx, prefix, config_path), log_dir=run_dir
    ) as child:
        await _wait_for_port(child, port)
        yield child


def _nginx_media_config(prefix: Path, port: int) -> str:
    return f"""{nginx_common(prefix)}
    types {{ audio/wav wav; }}
    log_format body_bytes '$body_bytes_sent';
    server {{
        listen 127.0.0.1:{port} ssl;
        access_log {prefix / _BYTES_LOG} body_bytes;
        ssl_certificate {prefix / "cert.pem"};
        ssl_certificate_key {prefix / "key.pem"};
        keepalive_requests 100000;
        keepalive_timeout 120s;
        root {prefix / "www"};
        location /media/ {{ }}
    }}
}}
"""


async def _wait_for_port(child: Child, port: int, timeout_s: float = 15.0) -> None:
    with trio.move_on_after(timeout_s):
        while child.process.returncode is None:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return
    raise RuntimeError(
        f"{child.name} did not listen on port {port}:\n{child.log_tail()}"
    )

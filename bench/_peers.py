"""The proxies under test, each in its own process on 127.0.0.1.

``voyo`` is this package's server (``python -m voyo_trio serve``). The peers
are a small Node.js proxy (``bench/peers/node_proxy.mjs``) and nginx as a
reverse proxy. Each runs in a cold mode, which opens a new upstream
connection per request, or a warm mode, which keeps upstream connections
alive. Every proxy serves the media of a track at ``GET /proxy?v=ID&quality=Q``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ._procs import Child, bench_env, free_port, run_child, wait_until_ready

__all__ = [
    "PeerStatus",
    "Server",
    "Upstream",
    "find_peer",
    "nginx_proxy",
    "node_proxy",
    "voyo_server",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_PROXY_SCRIPT = Path(__file__).resolve().parent / "peers" / "node_proxy.mjs"
# Keep-alive connections that the warm nginx keeps per worker.
_NGINX_KEEPALIVE = 64


@dataclass(frozen=True)
class Upstream:
    """Media source of the proxies, and the CA bundle they must trust.

    ``media_urls`` maps ``"VIDEO_ID:QUALITY"`` to a signed media URL, as
    yt-dlp would resolve it. voyo resolves the same URLs itself from the
    watch pages; the peers are given them, so resolution is excluded.
    """

    watch_url_template: str
    standin_base_url: str
    ca_file: Path
    media_urls: Mapping[str, str]

    @property
    def media_origin(self) -> tuple[str, int]:
        """Host and port of the media URLs."""
        parts = urlsplit(next(iter(self.media_urls.values())))
        return parts.hostname or "127.0.0.1", parts.port or 443


@dataclass(frozen=True)
class Server:
    """One running proxy: its peer name, mode, address and process."""

    peer: str
    mode: str
    base_url: str
    child: Child

    def proxy_url(self, video_id: str, quality: str) -> str:
        """Return the URL that streams a track through this proxy."""
        return f"{self.base_url}/proxy?v={video_id}&quality={quality}"


@dataclass(frozen=True)
class PeerStatus:
    """Whether a peer's program is on PATH, with its version or the reason."""

    name: str
    path: str | None
    version: str | None
    reason: str | None

    @property
    def available(self) -> bool:
        return self.path is not None


def find_peer(program: str) -> PeerStatus:
    """Look ``program`` (``node`` or ``nginx``) up on PATH and read its version."""
    path = shutil.which(program)
    if path is None:
        hint = "apt-get install nginx" if program == "nginx" else "install Node.js"
        return PeerStatus(program, None, None, f"{program} is not on PATH ({hint})")
    flag = "--version" if program == "node" else "-v"
    result = subprocess.run(
        [path, flag], capture_output=True, text=True, timeout=10, check=False
    )
    version = (result.stdout or result.stderr).strip().splitlines()[0]
    return PeerStatus(program, path, version, None)


def _voyo_env(upstream: Upstream, extra: Mapping[str, str]) -> dict[str, str]:
    # Every upstream setting points at the stand-in, so no default can send
    # a request off this machine.
    return bench_env(
        {
            "VOYO_WATCH_URL_TEMPLATE": upstream.watch_url_template,
            "VOYO_MEDIA_HOSTS": "127.0.0.1",
            "VOYO_UPSTREAM_CA_FILE": str(upstream.ca_file),
            "VOYO_INNERTUBE_BASE_URL": upstream.standin_base_url,
            "VOYO_THUMBNAIL_BASE_URL": upstream.standin_base_url,
            "VOYO_SEARCH_FALLBACK": "false",
            "VOYO_LOG_LEVEL": "WARNING",
            "VOYO_SHUTDOWN_GRACE_S": "1",
            **extra,
        }
    )


@asynccontextmanager
async def voyo_server(
    log_dir: Path,
    upstream: Upstream,
    *,
    mode: str,
    settings: Mapping[str, str] | None = None,
    name: str = "voyo",
) -> AsyncIterator[Server]:
    """Run ``python -m voyo_trio serve``; ``settings`` are extra VOYO_* values."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "voyo_trio",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = _voyo_env(upstream, settings or {})
    base_url = f"http://127.0.0.1:{port}"
    label = f"{name}-{mode}"
    async with run_child(label, argv, log_dir=log_dir, env=env, cwd=REPO_ROOT) as child:
        await wait_until_ready(child, f"{base_url}/health")
        yield Server(name, mode, base_url, child)


@asynccontextmanager
async def node_proxy(
    log_dir: Path, upstream: Upstream, *, mode: str, node: str
) -> AsyncIterator[Server]:
    """Run the Node.js peer with a keep-alive agent (warm) or without (cold)."""
    port = free_port()
    config = {
        "port": port,
        "keepAlive": mode == "warm",
        "caFile": str(upstream.ca_file),
        "routes": dict(upstream.media_urls),
    }
    config_path = log_dir / f"node-{mode}-{port}.json"
    config_path.write_text(json.dumps(config, indent=2))
    argv = [node, str(NODE_PROXY_SCRIPT), str(config_path)]
    base_url = f"http://127.0.0.1:{port}"
    async with run_child(f"node-{mode}", argv, log_dir=log_dir) as child:
        await wait_until_ready(child, f"{base_url}/health")
        yield Server("node", mode, base_url, child)


@asynccontextmanager
async def nginx_proxy(
    log_dir: Path, upstream: Upstream, *, mode: str, nginx: str
) -> AsyncIterator[Server]:
    """Run nginx as a reverse proxy, with upstream keep-alive when warm."""
    port = free_port()
    prefix = log_dir / f"nginx-{mode}-{port}"
    prefix.mkdir(mode=0o755)
    config_path = prefix / "nginx.conf"
    config_path.write_text(_nginx_proxy_config(prefix, port, upstream, mode))
    argv = nginx_argv(nginx, prefix, config_path)
    base_url = f"http://127.0.0.1:{port}"
    async with run_child(f"nginx-{mode}", argv, log_dir=log_dir) as child:
        await wait_until_ready(child, f"{base_url}/health")
        yield Server("nginx", mode, base_url, child)


def nginx_argv(nginx: str, prefix: Path, config_path: Path) -> list[str]:
    """Return the command that runs nginx in the foreground on this config."""
    return [
        nginx,
        "-p",
        str(prefix),
        "-c",
        str(config_path),
        "-e",
        str(prefix / "error.log"),
        "-g",
        "daemon off;",
    ]


def nginx_common(prefix: Path) -> str:
    """Return the main and http-level directives that every config shares."""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temp}
"""


def _nginx_proxy_config(prefix: Path, port: int, upstream: Upstream, mode: str) -> str:
    host, media_port = upstream.media_origin
    routes = "\n".join(
        f'        "{key}" "{_path_and_query(url)}";'
        for key, url in upstream.media_urls.items()
    )
    keepalive = f"keepalive {_NGINX_KEEPALIVE};" if mode == "warm" else ""
    # HTTP/1.1 with an empty Connection header is what keeps nginx's upstream
    # connections alive; the cold mode sends HTTP/1.0 with Connection: close.
    version = (
        'proxy_http_version 1.1;\n            proxy_set_header Connection "";'
        if mode == "warm"
        else "proxy_http_version 1.0;"
    )
    return f"""{nginx_common(prefix)}
    map "$arg_v:$arg_quality" $media_target {{
        default "";
{routes}
    }}
    upstream media {{
        server {host}:{media_port};
        {keepalive}
    }}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000;
        location = /health {{ return 200 "ok\\n"; }}
        location = /proxy {{
            if ($media_target = "") {{ return 404; }}
            proxy_pass https://media$media_target;
            {version}
            proxy_set_header Host {host}:{media_port};
            proxy_set_header Accept-Encoding identity;
            proxy_ssl_trusted_certificate {upstream.ca_file};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
        }}
    }}
}}
"""


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path

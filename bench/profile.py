"""Profile the voyo server with py-spy under one kind of load.

``python -m bench.profile throughput`` samples the server while the load
process downloads the long track whole, again and again. ``python -m
bench.profile requests`` samples it while one client sends warm 1 KiB range
requests back to back through the relay at 0 ms. Each prints where the
server's samples fall, by library of the innermost frame, and writes py-spy's
raw stacks beside it. py-spy is not a dependency: ``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import collections
import logging
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx
import trio

from ._media import LONG_TRACK_ID, QUALITY, SHORT_TRACK, bulk_host, latency_host
from ._peers import Server, find_peer, voyo_server
from ._throughput import resolve_long_track, run_load_process

logger = logging.getLogger("bench.profile")

_SAMPLE_HZ = 250
_FRAME_FILE = re.compile(r"\(([^():]+):\d+\)$")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("load", choices=("throughput", "requests"))
    parser.add_argument("--seconds", type=float, default=8.0, help="sampling time")
    parser.add_argument(
        "--output", type=Path, default=Path("."), help="folder for the raw stacks"
    )
    return parser


async def _record(pid: int, seconds: float, output: Path) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds))]
    argv += ["--rate", str(_SAMPLE_HZ), "--format", "raw", "-o", str(output)]
    argv += ["--nonblocking"]
    await trio.run_process(argv, capture_stdout=True, capture_stderr=True)


async def _profile_throughput(run_dir: Path, seconds: float, output: Path) -> None:
    nginx = find_peer("nginx").path
    async with (
        bulk_host(run_dir, 1200, nginx) as host,
        voyo_server(run_dir, host.upstream, mode="warm") as voyo,
    ):
        await resolve_long_track([voyo])
        target = f"voyo={voyo.proxy_url(LONG_TRACK_ID, QUALITY)}"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_load_forever, target)
            await _record(voyo.child.process.pid, seconds, output)
            nursery.cancel_scope.cancel()


async def _load_forever(target: str) -> None:
    while True:
        await run_load_process(["fetch", "--rounds", "2", "--target", target])


async def _profile_requests(run_dir: Path, seconds: float, output: Path) -> None:
    async with (
        latency_host(run_dir, 0.0) as host,
        voyo_server(run_dir, host.upstream, mode="warm") as voyo,
        trio.open_nursery() as nursery,
    ):
        await _resolve_short_track(voyo)
        nursery.start_soon(_request_forever, voyo)
        await _record(voyo.child.process.pid, seconds, output)
        nursery.cancel_scope.cancel()


async def _resolve_short_track(voyo: Server) -> None:
    # yt-dlp runs here, before sampling starts, so it stays out of the profile.
    async with httpx.AsyncClient(trust_env=False, timeout=30.0) as client:
        params = {"v": SHORT_TRACK.video_id, "quality": QUALITY}
        (await client.get(f"{voyo.base_url}/stream", params=params)).raise_for_status()


async def _request_forever(voyo: Server) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
        url = voyo.proxy_url(SHORT_TRACK.video_id, QUALITY)
        while True:
            await client.get(url, headers={"Range": "bytes=0-1023"})


def summarize(raw_stacks: Path) -> list[tuple[str, float]]:
    """Return (library, share of samples) by the innermost frame's file."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw_stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        match = _FRAME_FILE.search(stack.split(";")[-1])
        counts[_library(match.group(1) if match else "?")] += int(count)
    total = sum(counts.values()) or 1
    return [(name, count / total) for name, count in counts.most_common()]


def _library(path: str) -> str:
    if path.startswith("trio/_core/_io_epoll"):
        return "trio epoll wait (idle)"
    if path.startswith(("trio/_socket", "trio/_highlevel_socket")):
        return "trio sockets, including send and recv calls"
    if path.startswith("trio/_ssl"):
        return "trio SSLStream"
    if path.startswith("trio"):
        return "trio scheduler, cancel scopes and channels"
    if path == "ssl.py":
        return "ssl, including OpenSSL encryption"
    return path.split("/")[0] if "/" in path else f"stdlib {path}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.output.mkdir(parents=True, exist_ok=True)
    output = (args.output / f"profile-{args.load}.txt").resolve()
    with tempfile.TemporaryDirectory(prefix="voyo-profile-") as folder:
        run_dir = Path(folder)
        run_dir.chmod(0o755)
        runner = _profile_throughput if args.load == "throughput" else _profile_requests
        trio.run(runner, run_dir, args.seconds, output)
    for name, share in summarize(output)[:14]:
        print(f"{100 * share:5.1f}%  {name}")
    print(f"raw stacks: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
